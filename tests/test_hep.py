from __future__ import annotations

import struct

import pytest

from capture.hep import HepError, build_hep3, is_hep, parse_hep
from tests.helpers import ip4, sip_invite

SRC, DST = ip4("192.0.2.1"), ip4("192.0.2.2")
TS = 1_700_000_000_123_456_000


@pytest.mark.parametrize("compress", [False, True])
def test_hep3_round_trip(compress: bool) -> None:
    pkt = build_hep3(TS, SRC, DST, 5060, 5070, sip_invite(), compress=compress)
    assert is_hep(pkt, 1234)
    assert parse_hep(pkt) == (TS, 17, SRC, DST, 5060, 5070, sip_invite(), 1)


def test_hep3_ipv6_and_vendor_chunks_skipped() -> None:
    s6, d6 = bytes(range(16)), bytes(range(16, 32))
    pkt = build_hep3(TS, s6, d6, 1, 2, b"x")
    extra = struct.pack("!HHH", 0x1234, 99, 8) + b"zz"
    pkt = pkt[:4] + struct.pack("!H", len(pkt) + len(extra)) + pkt[6:] + extra
    assert parse_hep(pkt)[2:4] == (s6, d6)


def test_hep2() -> None:
    hdr = struct.pack("!BBBBHH", 2, 28, 2, 17, 5060, 5070) + SRC + DST
    hdr += struct.pack("<II", TS // 10**9, TS % 10**9 // 1000) + b"\0" * 4
    assert is_hep(hdr + b"SIP", 9060) and not is_hep(hdr + b"SIP", 5060)
    assert parse_hep(hdr + b"SIP") == (TS, 17, SRC, DST, 5060, 5070, b"SIP", 1)


def test_malformed() -> None:
    good = build_hep3(TS, SRC, DST, 5060, 5070, b"payload")
    for cut in range(4, len(good) - 1):
        with pytest.raises(HepError):
            parse_hep(good[:4] + struct.pack("!H", len(good)) + good[6:cut])
    bomb = build_hep3(TS, SRC, DST, 1, 2, b"\0" * 400_000, compress=True)
    with pytest.raises(HepError, match="expands"):
        parse_hep(bomb)
    with pytest.raises(HepError):
        parse_hep(b"\x02\x1c\x02\x11")
