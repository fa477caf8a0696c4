from __future__ import annotations

import struct

import pytest

from writer.errors import RtpError
from writer.rtcp import BYE, RR, SR, parse_rtcp


def sr(ssrc: int, blocks: list[tuple[int, int, int, int, int, int, int]]) -> bytes:
    body = struct.pack("!IIIII", 0x12345678, 0x9ABCDEF0, 1600, 50, 8000)
    for about, frac, cum, ext, jit, lsr, dlsr in blocks:
        body += struct.pack("!IIIIII", about, frac << 24 | (cum & 0xFFFFFF), ext, jit, lsr, dlsr)
    return struct.pack("!BBHI", 0x80 | len(blocks), SR, (len(body) + 4) // 4, ssrc) + body


def rr(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x80, RR, 1, ssrc)


def bye(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x81, BYE, 1, ssrc)


def test_compound_sr_with_blocks_then_bye() -> None:
    pkt = sr(7, [(9, 25, 12, 70000, 40, 0x5678_9ABC, 65536)]) + bye(7)
    reports, byes = parse_rtcp(pkt)
    (r,) = reports
    assert (r.kind, r.ssrc, r.ntp, r.sent_packets) == (SR, 7, 0x123456789ABCDEF0, 50)
    assert r.blocks == [(9, 25, 12, 70000, 40, 0x56789ABC, 65536)] and byes == [7]


def test_reduced_size_rr_and_negative_cumulative_loss() -> None:
    reports, _ = parse_rtcp(rr(3))
    assert reports[0].kind == RR and reports[0].blocks == []
    (r,), _ = parse_rtcp(sr(1, [(2, 0, -3, 1, 0, 0, 0)]))
    assert r.blocks[0][2] == -3


@pytest.mark.parametrize("cut", range(1, 60))
def test_truncation_raises_or_parses_a_prefix(cut: int) -> None:
    pkt = sr(7, [(9, 25, 12, 70000, 40, 1, 2)]) + bye(7)
    try:
        reports, _ = parse_rtcp(pkt[:cut])
    except RtpError:
        return
    assert len(reports) <= 1
