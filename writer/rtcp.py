"""RTCP parsing (RFC 3550 section 6, RFC 5506 reduced-size): compound packets into sender
reports, receiver report blocks, SDES CNAMEs and BYEs. Sans-IO; malformed input raises
RtpError with a fixed message."""

from __future__ import annotations

import struct

from writer.errors import RtpError

SR, RR, SDES, BYE, APP, XR = 200, 201, 202, 203, 204, 207
# Packets per compound and report blocks per report: RFC 3550 allows 31 blocks.
MAX_PACKETS = 16
_HDR = struct.Struct("!BBH")
_SR = struct.Struct("!IIIII")  # NTP msw, NTP lsw, RTP ts, packet count, octet count
_BLOCK = struct.Struct("!IIIIII")

class Report:
    """One SR or RR of a compound packet."""

    __slots__ = ("kind", "ssrc", "ntp", "rtp_ts", "sent_packets", "blocks")

    def __init__(self, kind: int, ssrc: int) -> None:
        self.kind = kind
        """SR or RR."""
        self.ssrc = ssrc
        """The reporter's SSRC."""
        self.ntp = 0
        """SR: the sender's NTP timestamp (64-bit), 0 for RR."""
        self.rtp_ts = 0
        """SR: the RTP timestamp matching ``ntp``."""
        self.sent_packets = 0
        """SR: packets sent so far."""
        self.blocks: list[tuple[int, int, int, int, int, int, int]] = []
        """(about SSRC, fraction lost in 1/256, cumulative lost, extended highest sequence,
        jitter in timestamp units, LSR, DLSR in 1/65536 s)."""


def parse_rtcp(pkt: bytes) -> tuple[list[Report], list[int]]:
    """The SR/RR reports and the SSRCs that said BYE in a (compound) RTCP packet."""
    reports: list[Report] = []
    byes: list[int] = []
    pos = 0
    for _ in range(MAX_PACKETS):
        if pos + 4 > len(pkt):
            break
        b0, pt, length = _HDR.unpack_from(pkt, pos)
        if b0 >> 6 != 2:
            raise RtpError("RTCP version is not 2")
        end = pos + 4 + length * 4
        if end > len(pkt):
            raise RtpError("RTCP length runs past the packet")
        count = b0 & 0x1F
        if pt in (SR, RR):
            if pos + 8 > end:
                raise RtpError("RTCP report is truncated")
            report = Report(pt, struct.unpack_from("!I", pkt, pos + 4)[0])
            at = pos + 8
            if pt == SR:
                if at + 20 > end:
                    raise RtpError("RTCP sender info is truncated")
                msw, lsw, report.rtp_ts, report.sent_packets, _octets = _SR.unpack_from(pkt, at)
                report.ntp = msw << 32 | lsw
                at += 20
            for _b in range(count):
                if at + 24 > end:
                    raise RtpError("RTCP report block is truncated")
                ssrc, lost_word, ext_seq, jitter, lsr, dlsr = _BLOCK.unpack_from(pkt, at)
                cumulative = lost_word & 0xFFFFFF
                if cumulative & 0x800000:  # signed 24-bit (duplicates can make it negative)
                    cumulative -= 0x1000000
                report.blocks.append((ssrc, lost_word >> 24, cumulative, ext_seq, jitter,
                                      lsr, dlsr))
                at += 24
            reports.append(report)
        elif pt == BYE:
            byes += [struct.unpack_from("!I", pkt, pos + 4 + 4 * i)[0]
                     for i in range(count) if pos + 8 + 4 * i <= end]
        pos = end
        if length == 0 and pt not in (SR, RR):
            break
    return reports, byes
