"""The RTP header of a packet without its payload (RFC 3550 section 5.1): what a paused
recording keeps, cut where the packet is captured so paused audio never reaches a disk."""

from __future__ import annotations

import struct

_EXT = struct.Struct("!HH")


def header_only(pkt: bytes) -> bytes:
    """The RTP header of a packet without its payload (fixed header, CSRCs, extension; the
    padding flag cleared since the padding goes too): what a paused recording keeps. A
    packet too short to hold its own header keeps its first 12 bytes at most."""
    n = len(pkt)
    if n < 12:
        return pkt[:12]
    b0 = pkt[0]
    end = 12 + (b0 & 0x0F) * 4
    if b0 & 0x10 and n >= end + 4:
        end += 4 + _EXT.unpack_from(pkt, end)[1] * 4
    end = min(end, n)
    return bytes([b0 & 0xDF]) + pkt[1:end]
