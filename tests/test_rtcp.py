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
    c = parse_rtcp(pkt)
    reports, byes = c.reports, c.byes
    (r,) = reports
    assert (r.kind, r.ssrc, r.ntp, r.sent_packets) == (SR, 7, 0x123456789ABCDEF0, 50)
    assert r.blocks == [(9, 25, 12, 70000, 40, 0x56789ABC, 65536)] and byes == [7]


def test_reduced_size_rr_and_negative_cumulative_loss() -> None:
    reports = parse_rtcp(rr(3)).reports
    assert reports[0].kind == RR and reports[0].blocks == []
    (r,) = parse_rtcp(sr(1, [(2, 0, -3, 1, 0, 0, 0)])).reports
    assert r.blocks[0][2] == -3


@pytest.mark.parametrize("cut", range(1, 60))
def test_truncation_raises_or_parses_a_prefix(cut: int) -> None:
    pkt = sr(7, [(9, 25, 12, 70000, 40, 1, 2)]) + bye(7)
    try:
        reports = parse_rtcp(pkt[:cut]).reports
    except RtpError:
        return
    assert len(reports) <= 1


def sdes(ssrc: int, cname: bytes) -> bytes:
    item = bytes([1, len(cname)]) + cname + bytes([8, 2]) + b"hi"  # CNAME, then a PRIV item
    chunk = struct.pack("!I", ssrc) + item + bytes(4 - len(item) % 4)
    return struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk


def xr_voip(reporter: int, about: int) -> bytes:
    metrics = struct.pack("!IBBBBHHHHbbBBBBBBBxHHH", about, 64, 3, 10, 1, 120, 2000, 86,
                          30, -18, -72, 127, 16, 88, 127, 41, 127, 0x20, 40, 60, 120)
    return (struct.pack("!BBHI", 0x80, 207, 13, reporter)
            + struct.pack("!BBH", 4, 0, 2) + bytes(8)  # a receiver reference time block
            + struct.pack("!BBH", 7, 0, 8) + metrics)


def test_sdes_cname_and_xr_voip_metrics() -> None:
    c = parse_rtcp(rr(5) + sdes(5, b"alice@example.org") + xr_voip(5, 9))
    assert c.cnames == {5: "alice@example.org"}
    (m,) = c.voip
    assert m.ssrc == 9 and m.loss_pct == 25.0 and m.rtt_ms == 86
    assert (m.signal_dbm, m.noise_dbm, m.r_factor, m.mos_lq, m.mos_cq) == (-18, -72, 88, 4.1,
                                                                          None)
    assert (m.jb_nominal_ms, m.jb_max_ms, m.jb_abs_max_ms, m.jb_adaptive) == (40, 60, 120,
                                                                              False)
    assert m.to_json()["burst_ms"] == 120


@pytest.mark.parametrize("cut", range(1, 120))
def test_sdes_and_xr_truncated_raise_or_parse_a_prefix(cut: int) -> None:
    pkt = rr(5) + sdes(5, b"alice@example.org") + xr_voip(5, 9)
    try:
        c = parse_rtcp(pkt[:cut])
    except RtpError:
        return
    assert len(c.voip) <= 1 and len(c.cnames) <= 1
