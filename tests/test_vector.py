"""The batch decoder agrees with the per-packet decoder on every packet it takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calltap.generate import GenOptions, generate
from capture.decode import decode
from capture.index import index_capture
from capture.vector import decode_udp, leading_words, rtp_fields, rtp_like
from tests.helpers import ALL_SHARED, need_shared, pcap_bytes, udp4


def check(path: Path) -> tuple[int, int]:
    """(packets taken, RTP-like packets); asserts each equals the per-packet decode."""
    ix = index_capture(str(path))
    try:
        udp = decode_udp(ix)
        rtp = rtp_like(ix, udp)
        pt, marker, seq, ts, ssrc = rtp_fields(ix, udp.payload[rtp])
        fields = dict(zip(np.flatnonzero(rtp).tolist(), zip(
            pt.tolist(), marker.tolist(), seq.tolist(), ts.tolist(), ssrc.tolist(),
            strict=True), strict=True))
        for i in np.flatnonzero(udp.taken).tolist():
            got = decode(int(ix.link[i]), ix.frame(i))
            assert not isinstance(got, int), (i, got)
            proto, src, dst, sport, dport, payload = got
            mine = ix.data[int(udp.payload[i]):int(udp.payload[i]) + int(udp.size[i])].tobytes()
            if (sport, dport) != (udp.sport[i], udp.dport[i]):
                assert not rtp[i]  # a tunnel the per-packet decoder opened (VXLAN...)
                continue
            assert proto == 17
            assert (int.from_bytes(src, "big"), int.from_bytes(dst, "big")) == \
                (udp.src[i], udp.dst[i])
            assert payload == mine
            lead = payload[:16].ljust(16, b"\0")
            assert [int.from_bytes(lead[:8], "big", signed=True),
                    int.from_bytes(lead[8:], "big", signed=True)] == udp.lead[i].tolist()
            if rtp[i]:
                b = payload
                assert fields[i] == (b[1] & 0x7F, b[1] >> 7, int.from_bytes(b[2:4], "big"),
                                     int.from_bytes(b[4:8], "big"),
                                     int.from_bytes(b[8:12], "big"))
        return int(udp.taken.sum()), int(rtp.sum())
    finally:
        ix.close()


def test_generated_capture_is_all_taken(tmp_path: Path) -> None:
    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=3, duration=2.0, seed=2))
    taken, rtp = check(pcap)
    sip = 3 * 6  # INVITE, 100, 180, 200, ACK, BYE... at most; the rest is RTP
    assert taken == len(index_capture(str(pcap))) and rtp >= taken - sip - 6


def test_odd_packets_are_left_to_the_per_packet_decoder(tmp_path: Path) -> None:
    rtp = bytes([0x80, 0]) + (5).to_bytes(2, "big") + bytes(8) + b"x" * 160
    good = udp4("192.0.2.1", 4000, "192.0.2.2", 5000, rtp)
    frag = bytearray(good)
    frag[14 + 6] = 0x20  # more fragments
    short = good[:30]
    ipv6 = bytearray(good)
    ipv6[12:14] = b"\x86\xdd"
    tcp = bytearray(good)
    tcp[14 + 9] = 6
    rtcp = udp4("192.0.2.1", 4001, "192.0.2.2", 5001, bytes([0x80, 200]) + bytes(26))
    low = udp4("192.0.2.1", 53, "192.0.2.2", 5000, rtp)
    p = tmp_path / "odd.pcap"
    p.write_bytes(pcap_bytes([(k * 1000, f) for k, f in enumerate(
        [good, bytes(frag), short, bytes(ipv6), bytes(tcp), rtcp, low])]))
    ix = index_capture(str(p))
    udp = decode_udp(ix)
    assert udp.taken.tolist() == [True, False, False, False, False, True, True]
    assert rtp_like(ix, udp).tolist() == [True, False, False, False, False, False, False]
    ix.close()


@pytest.mark.parametrize("name", ALL_SHARED)
def test_shared_captures(name: str) -> None:
    check(need_shared() / name)


def test_header_copy_edges(tmp_path: Path) -> None:
    """Packets whose headers reach past the copied leading bytes (IP options) and the
    last packets of a capture (fewer bytes after them than the copy takes) decode as the
    per-packet decoder decodes them, or are left to it."""
    rtp = bytes([0x80, 0]) + (5).to_bytes(2, "big") + bytes(8)
    good = udp4("192.0.2.1", 4000, "192.0.2.2", 5000, rtp + b"y" * 20)
    opts = bytearray(good)
    opts[14] = 0x46  # IHL 6: one word of options
    opts[14 + 20:14 + 20] = b"\x01\x01\x01\x00"
    opts[16:18] = (int.from_bytes(opts[16:18], "big") + 4).to_bytes(2, "big")
    opts3 = bytearray(good)  # the payload's first 16 bytes end past the copy
    opts3[14] = 0x48  # IHL 8: three words of options
    opts3[14 + 20:14 + 20] = b"\x01" * 12
    opts3[16:18] = (int.from_bytes(opts3[16:18], "big") + 12).to_bytes(2, "big")
    long_opts = bytearray(good)
    long_opts[14] = 0x4F  # IHL 15: the UDP header lies past the copy
    long_opts[14 + 20:14 + 20] = b"\x01" * 40
    long_opts[16:18] = (int.from_bytes(long_opts[16:18], "big") + 40).to_bytes(2, "big")
    tiny = udp4("192.0.2.3", 4002, "192.0.2.4", 5002, rtp)  # 54 bytes, last in the file
    p = tmp_path / "edges.pcap"
    p.write_bytes(pcap_bytes([(k * 1000, f) for k, f in enumerate(
        [good, bytes(opts), bytes(opts3), bytes(long_opts), tiny])]))
    ix = index_capture(str(p))
    assert decode_udp(ix).taken.tolist() == [True, True, True, False, True]
    ix.close()
    assert check(p) == (4, 4)


def test_leading_words_are_the_first_16_payload_bytes_zero_padded() -> None:
    rng = np.random.default_rng(3)
    for total in (1, 7, 8, 9, 15, 16, 17, 40):
        data = rng.integers(0, 256, total, dtype=np.uint8)
        at = np.array([a for a in range(total) for _ in range(total - a + 1)], np.int64)
        size = np.array([n for a in range(total) for n in range(total - a + 1)], np.int64)
        first, second = leading_words(data, at, size)
        for a, n, f, s in zip(at.tolist(), size.tolist(), first.tolist(), second.tolist(),
                              strict=True):
            want = bytes(data[a:a + min(n, 16)]).ljust(16, b"\0")
            assert f.to_bytes(8, "big", signed=True) == want[:8], (total, a, n)
            assert s.to_bytes(8, "big", signed=True) == want[8:], (total, a, n)
