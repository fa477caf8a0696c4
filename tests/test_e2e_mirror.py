"""Mirror-port variations of one generated capture must give the same recordings as the
clean capture: tunnels, tags, duplicates, NAT, SSRC changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from calltap.generate import GenOptions, generate
from calltap.mirror import VARIANTS, Frame
from capture.pcapfile import open_capture
from tests.helpers import load_index, pcap_bytes, run_import

OPTS = GenOptions(calls=3, duration=2.0, seed=17)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Frame], Path]:
    base = tmp_path_factory.mktemp("clean")
    generate(str(base / "clean.pcap"), OPTS)
    frames = [(t, f) for t, _l, f in open_capture(str(base / "clean.pcap"))]
    run_import([base / "clean.pcap"], base / "out")
    return frames, base / "out"


# joined by a configured header, and transcoded: tested in test_e2e_relay
OWN_TESTS = {"b2bua-header", "b2bua-transcode", "b2bua-media"}


@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - OWN_TESTS))
def test_variant_records_like_the_clean_capture(variant: str, clean: tuple[list[Frame], Path],
                                                tmp_path: Path) -> None:
    frames, clean_out = clean
    pcap = tmp_path / f"{variant}.pcap"
    pcap.write_bytes(pcap_bytes(VARIANTS[variant](frames)))
    run_import([pcap], tmp_path / "out")
    keys = ("call_id", "caller", "callee", "status", "codecs", "audio", "lost", "start")
    a = sorted(({k: e[k] for k in keys} for e in load_index(clean_out)),
               key=lambda e: e["call_id"])
    b = sorted(({k: e[k] for k in keys} for e in load_index(tmp_path / "out")),
               key=lambda e: e["call_id"])
    assert a == b and len(a) == 3
    for e in a:  # same channels, same audio, sample for sample
        audio = e["audio"]
        assert (clean_out / audio).read_bytes() == (tmp_path / "out" / audio).read_bytes()
