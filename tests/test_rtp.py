from __future__ import annotations

import struct

import pytest

from writer.errors import RtpError
from writer.rtp import parse_rtp


def packet(b0: int = 0x80, pt: int = 0, extra: bytes = b"", payload: bytes = b"\xff" * 160
           ) -> bytes:
    return struct.pack("!BBHII", b0, pt, 7, 1000, 0xDEADBEEF) + extra + payload


def test_plain() -> None:
    p = packet()
    assert parse_rtp(p) == (0, 0, 7, 1000, 0xDEADBEEF, 12, 172)


def test_csrc_extension_padding_marker() -> None:
    csrc = b"\0\0\0\1\0\0\0\2"
    ext = struct.pack("!HH", 0xBEDE, 1) + b"\0" * 4
    p = packet(0x80 | 0x20 | 0x10 | 2, 0x80 | 8, csrc + ext, b"\x55" * 10 + b"\0\0\3")
    pt, marker, _seq, _ts, _ssrc, start, end = parse_rtp(p)
    assert (pt, marker) == (8, 1)
    assert p[start:end] == b"\x55" * 10


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80" * 11, packet(0x40), packet(0x80 | 0x20, payload=b"\0"),
     packet(0x8F, payload=b""), packet(0x90, payload=b"\0\0"), packet(pt=72)],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_every_prefix_raises_or_parses() -> None:
    p = packet(0x80 | 0x10 | 1, 0, b"\0\0\0\1" + struct.pack("!HH", 1, 1) + b"\0" * 4, b"ab")
    for cut in range(len(p) + 1):
        try:
            _pt, _m, _seq, _ts, _ssrc, start, end = parse_rtp(p[:cut])
        except RtpError:
            assert cut < len(p)
            continue
        assert 12 <= start <= end <= cut



def test_header_only_keeps_the_header_and_drops_padding_flag() -> None:
    from capture.rtphead import header_only
    from writer.rtp import parse_rtp

    pkt = bytes([0x80 | 0x20 | 0x10 | 1, 0]) + bytes(10) + b"CSRC" + b"\xbe\xde\x00\x01" + \
        b"EXT!" + b"audio" + b"\x03"
    head = header_only(pkt)
    assert head == bytes([0x80 | 0x10 | 1, 0]) + bytes(10) + b"CSRC\xbe\xde\x00\x01EXT!"
    _pt, _m, _s, _t, _ssrc, a, b = parse_rtp(head)
    assert a == b == len(head)  # an empty payload, parsed without error
    assert header_only(b"\x80\x00") == b"\x80\x00"
