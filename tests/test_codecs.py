from __future__ import annotations

from pathlib import Path

import pytest

from writer.codecs import decoder_for, resolve


def test_resolve_static_and_dynamic() -> None:
    assert resolve(0, {}) == ("PCMU", 8000, 1)
    assert resolve(8, {}) == ("PCMA", 8000, 1)
    assert resolve(96, {96: ("pcma", 8000, 1)}) == ("PCMA", 8000, 1)
    assert resolve(96, {}) == ("", 0, 0)


def test_decoders() -> None:
    dec = decoder_for("PCMU", 8000)
    assert dec is not None and dec.rate == 8000 and len(dec.decode(b"\xff" * 160)) == 160
    assert decoder_for("NO-SUCH-CODEC", 8000) is None
    assert decoder_for("QCELP", 8000) is None


def test_lpc10_frames() -> None:
    from writer import lpc10

    if not lpc10.available():
        pytest.skip("libspandsp is not installed (.ci/setup installs it)")
    dec = decoder_for("LPC", 8000)
    assert dec is not None and dec.name == "LPC/8000"
    assert len(dec.decode(bytes(28))) == 720  # four 22.5 ms frames
    assert len(dec.decode(bytes(10))) == 180  # a torn frame is left out
    assert len(dec.decode(b"")) == 0



def test_an_empty_g729_payload_is_a_decode_error_not_a_lost_call(tmp_path: Path) -> None:
    """Found by bench/fuzz_bench.py (sip-rtp-g729a.pcap, round 205 of seed 1): an RTP
    packet cut to its 12-byte header made the G.729 decoder concatenate nothing, and the
    whole call went unwritten. Now that packet is a decode error and the call is written."""
    import struct

    from capture.pcapfile import open_capture
    from tests.helpers import load_index, load_summary, need_shared, pcap_bytes, run_import

    src = need_shared() / "sip-rtp-g729a.pcap"
    frames = [(t, bytes(f)) for t, _l, f in open_capture(str(src))]
    cut = 0
    for k, (t, f) in enumerate(frames):  # the first G.729 packet: payload type 18, IPv4/UDP
        if len(f) > 54 and f[23] == 17 and f[42] & 0xC0 == 0x80 and f[43] & 0x7F == 18:
            ip = bytearray(f[:54])
            struct.pack_into("!H", ip, 16, 20 + 8 + 12)  # IP total length
            struct.pack_into("!H", ip, 24, 0)  # IP checksum: not checked
            struct.pack_into("!H", ip, 38, 8 + 12)  # UDP length
            struct.pack_into("!H", ip, 40, 0)  # UDP checksum: none
            frames[k] = (t, bytes(ip))
            cut += 1
            break
    assert cut == 1
    pcap = tmp_path / "cut.pcap"
    pcap.write_bytes(pcap_bytes(frames))
    run_import([pcap], tmp_path / "out", jobs=1)
    entries = load_index(tmp_path / "out")
    assert [e["call_id"] for e in entries] == ["1-24411@10.0.2.20"] and entries[0]["audio"]
    s = load_summary(tmp_path / "out", entries[0])
    assert sum(d["decode_errors"] for d in s["directions"]) == 1
