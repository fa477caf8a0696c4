"""Mangled packets never stop an import: real frames with random bytes flipped, cut short or
glued together go through every stage; each call still gets written."""

from __future__ import annotations

import random
from pathlib import Path

from calltap.generate import GenOptions, generate
from calltap.mirror import VARIANTS
from capture.pcapfile import open_capture
from tests.helpers import load_index, pcap_bytes, run_import


def mangle(frames: list[tuple[int, bytes]], seed: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    out = []
    for t, f in frames:
        roll = rng.random()
        if roll < 0.15:
            b = bytearray(f)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            out.append((t, bytes(b)))
        elif roll < 0.2:
            out.append((t, f[: rng.randrange(len(f))]))
        elif roll < 0.22:
            out.append((t, f + bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))))
        else:
            out.append((t, f))
    return out


def test_mangled_captures_import_without_error(tmp_path: Path) -> None:
    clean = tmp_path / "clean.pcap"
    generate(str(clean), GenOptions(calls=4, duration=2.0, seed=23, loss=0.01))
    frames = [(t, f) for t, _l, f in open_capture(str(clean))]
    for n, variant in enumerate(("", "sip-over-tcp", "gre", "hep3", "fragmented-invite")):
        base = VARIANTS[variant](frames) if variant else frames
        pcap = tmp_path / f"m{n}.pcap"
        pcap.write_bytes(pcap_bytes(mangle(base, seed=n)))
        imp = run_import([pcap], tmp_path / f"o{n}")
        assert imp.errors == [], variant
        assert sum(imp.drops.values()) > 0  # the damage was seen and counted
        index = load_index(tmp_path / f"o{n}")
        # every call is written: mangled SIP may leave one as unsignalled media, never lost
        assert len({e["call_id"] for e in index if e["status"] != "unsignalled"}) >= 3, variant
        assert sum(1 for e in index if e["audio"]) >= 4, variant
        for e in index:
            assert (tmp_path / f"o{n}" / e["summary"]).exists()


def test_an_sdp_format_past_127_is_no_payload_type(tmp_path: Path) -> None:
    """Found by bench/fuzz_atheris.py: an m= line offering "202" made the writer index its
    128-entry payload type table out of bounds. RTP payload types have 7 bits (RFC 3550
    section 5.1); such a format is no RTP payload type and the call is written as usual."""
    clean = tmp_path / "clean.pcap"
    generate(str(clean), GenOptions(calls=1, duration=2.0, seed=23))
    frames = [(t, f.replace(b"RTP/AVP 0 101", b"RTP/AVP 0 202")
               .replace(b"rtpmap:101", b"rtpmap:202").replace(b"fmtp:101", b"fmtp:202"))
              for t, _l, f in open_capture(str(clean))]
    assert sum(b"RTP/AVP 0 202" in f for _t, f in frames) >= 2  # offer and answer
    pcap = tmp_path / "pt202.pcap"
    pcap.write_bytes(pcap_bytes(frames))
    imp = run_import([pcap], tmp_path / "out")
    assert imp.errors == []
    (e,) = load_index(tmp_path / "out")
    assert e["audio"] and e["status"] == "completed"
