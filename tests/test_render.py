"""The writer's two ways of placing audio agree: a call laid out on columns (G.711 in the
clear) gives the same recording and summary as the packet-by-packet placement, and a
direction segmented on columns the same as the segmenter packet by packet, on messy
traffic (loss, reordering, duplicates, jitter, drift, SSRC changes, RTCP)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from calltap.generate import GenOptions, generate
from calltap.mirror import VARIANTS
from capture.pcapfile import open_capture
from tests.helpers import ROOT, load_index, pcap_bytes, run_import
from writer import render

sys.path.insert(0, str(ROOT / "bench"))
from compare_import import compare  # noqa: E402


@pytest.mark.parametrize("variant", ["", "in-order", "ssrc-change", "duplicated-mirror"])
def test_columns_and_packet_by_packet_agree(variant: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pcap = tmp_path / "messy.pcap"
    if variant == "in-order":  # what the one-mapping segmentation takes
        generate(str(pcap), GenOptions(calls=3, duration=5.0, seed=21, loss=0.03,
                                       jitter_ms=4.0, drift=0.0004, rtcp=True))
        variant = ""
    else:
        generate(str(pcap), GenOptions(calls=3, duration=5.0, seed=21, loss=0.03,
                                       reorder=0.05, duplicate=0.03, jitter_ms=15.0,
                                       drift=0.0004, rtcp=True))
    if variant:
        frames = [(t, f) for t, _l, f in open_capture(str(pcap))]
        pcap.write_bytes(pcap_bytes(VARIANTS[variant](frames)))
    run_import([pcap], tmp_path / "columns", jobs=1, dedup_window=0.0)
    monkeypatch.setattr(render, "_columnar", lambda _p, _d: False)
    monkeypatch.setattr(render, "_one_mapping", lambda *_a: None)
    run_import([pcap], tmp_path / "each", jobs=1, dedup_window=0.0)
    assert len(load_index(tmp_path / "each")) == 3
    assert compare(tmp_path / "each", tmp_path / "columns") == []


def test_late_cuts_follow_the_window_packet_by_packet() -> None:
    """The searched base moves give what StereoWindow.put finds one packet at a time:
    the same late samples per packet, and the same furthest sample, on random orders
    with packets arriving far behind and far ahead."""
    import numpy as np

    from writer.timeline import StereoWindow

    rng = np.random.default_rng(7)
    for trial in range(300):
        size = int(rng.integers(4, 60))
        count = int(rng.integers(0, 80))
        pos = np.cumsum(rng.integers(-3 * size, 2 * size, count)).astype(np.int64)
        pos += int(rng.integers(0, 3 * size))
        n = rng.integers(0, size + 5, count).astype(np.int64)
        chan = rng.integers(0, 2, count)
        w = StereoWindow(1, lambda _b: None)
        w.size = size
        w._buf = np.zeros((size, 2), np.int16)  # noqa: SLF001
        start = int(rng.integers(0, size))
        w._base = w._high = start  # noqa: SLF001
        want = []
        for q, k, c in zip(pos.tolist(), n.tolist(), chan.tolist(), strict=True):
            before = w.late_samples[c]
            w.put(c, q, np.ones(k, np.int16))
            want.append(w.late_samples[c] - before)
        cut, high = render.late_cuts(pos, np.minimum(n, size), start, start, size)
        assert cut.tolist() == want, trial
        assert high == max(w._high, start), trial  # noqa: SLF001
