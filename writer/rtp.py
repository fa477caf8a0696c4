"""RTP fixed header parsing (RFC 3550 section 5.1) for the hot path."""

from __future__ import annotations

import struct

from writer.errors import RtpError

_HDR = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")

RtpHeader = tuple[int, int, int, int, int, int, int]
"""(payload type, marker, sequence, timestamp, SSRC, payload start, payload end)."""


def parse_rtp(pkt: bytes) -> RtpHeader:
    """Parse an RTP header; the payload is ``pkt[start:end]`` (CSRCs, extension, padding cut)."""
    n = len(pkt)
    # Messages are fixed strings: shells count drops by message.
    if n < 12:
        raise RtpError("shorter than the 12-byte RTP header")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(pkt, 0)
    if b0 >> 6 != 2:
        raise RtpError("RTP version is not 2")
    start = 12 + (b0 & 0x0F) * 4
    if b0 & 0x10:
        if n < start + 4:
            raise RtpError("header extension runs past the packet")
        start += 4 + _EXT.unpack_from(pkt, start)[1] * 4
    end = n
    if b0 & 0x20:
        # RFC 3550 section 5.1: the last octet counts the padding, itself included.
        pad = pkt[-1]
        if pad == 0:
            raise RtpError("padding flag set with a zero padding count")
        end -= pad
    if start > end:
        raise RtpError("CSRC list, extension or padding overrun the packet")
    pt = b1 & 0x7F
    if 72 <= pt <= 76:
        # RFC 5761 section 4: these values belong to RTCP packet types when multiplexed.
        raise RtpError("payload type in the RTCP range 72-76")
    return pt, b1 >> 7, seq, ts, ssrc, start, end
