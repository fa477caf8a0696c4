"""RTCP parsing (RFC 3550 section 6, RFC 5506 reduced-size, RFC 3611 XR): compound packets
into sender reports, receiver report blocks, SDES CNAMEs, BYEs and XR VoIP metrics. Sans-IO;
malformed input raises RtpError with a fixed message."""

from __future__ import annotations

import struct

from writer.errors import RtpError

SR, RR, SDES, BYE, APP, XR = 200, 201, 202, 203, 204, 207
# Packets per compound and report blocks per report: RFC 3550 allows 31 blocks.
MAX_PACKETS = 16
_HDR = struct.Struct("!BBH")
_SR = struct.Struct("!IIIII")  # NTP msw, NTP lsw, RTP ts, packet count, octet count
_BLOCK = struct.Struct("!IIIIII")
_XR_VOIP = struct.Struct("!IBBBBHHHHbbBBBBBBBxHHH")
XR_VOIP_METRICS = 7  # RFC 3611 section 4.7
# RFC 3611 4.7: 127 in a level, R-factor or MOS field means "unavailable".
UNAVAILABLE = 127
SDES_CNAME = 1
# SDES chunks read per packet: RFC 3550 allows 31; compound packets from phones carry one.
MAX_CHUNKS = 31


class VoipMetrics:
    """An RFC 3611 VoIP Metrics block: the receiver's own view of one stream."""

    __slots__ = ("ssrc", "loss_pct", "discard_pct", "burst_density_pct", "gap_density_pct",
                 "burst_ms", "gap_ms", "rtt_ms", "end_system_delay_ms", "signal_dbm",
                 "noise_dbm", "r_factor", "mos_lq", "mos_cq", "jb_nominal_ms", "jb_max_ms",
                 "jb_abs_max_ms", "jb_adaptive")

    def __init__(self, pkt: bytes, at: int) -> None:
        (self.ssrc, loss, discard, burst_d, gap_d, self.burst_ms, self.gap_ms, self.rtt_ms,
         self.end_system_delay_ms, signal, noise, _rerl, _gmin, r, _ext_r, mos_lq, mos_cq,
         rx_config, self.jb_nominal_ms, self.jb_max_ms, self.jb_abs_max_ms
         ) = _XR_VOIP.unpack_from(pkt, at)
        self.loss_pct = loss * 100 / 256
        self.discard_pct = discard * 100 / 256
        self.burst_density_pct = burst_d * 100 / 256
        self.gap_density_pct = gap_d * 100 / 256
        self.signal_dbm = None if signal == UNAVAILABLE else signal
        self.noise_dbm = None if noise == UNAVAILABLE else noise
        self.r_factor = None if r == UNAVAILABLE else r
        self.mos_lq = None if mos_lq == UNAVAILABLE else mos_lq / 10
        self.mos_cq = None if mos_cq == UNAVAILABLE else mos_cq / 10
        self.jb_adaptive = (rx_config >> 4) & 3 == 3  # JBA bits: 3 adaptive, 2 non-adaptive

    def to_json(self) -> dict[str, object]:
        return {k: round(v, 2) if isinstance(v, float) else v
                for k in self.__slots__ if k != "ssrc" for v in (getattr(self, k),)}


class Compound:
    """What one (compound) RTCP packet says."""

    __slots__ = ("reports", "byes", "cnames", "voip")

    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.byes: list[int] = []
        self.cnames: dict[int, str] = {}
        self.voip: list[VoipMetrics] = []

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


def parse_rtcp(pkt: bytes) -> Compound:
    """The reports, BYEs, CNAMEs and XR VoIP metrics of a (compound) RTCP packet."""
    out = Compound()
    reports, byes = out.reports, out.byes
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
        elif pt == SDES:
            _sdes(pkt, pos + 4, end, count, out.cnames)
        elif pt == XR:
            _xr(pkt, pos + 8, end, out.voip)
        pos = end
        if length == 0 and pt not in (SR, RR):
            break
    return out


def _sdes(pkt: bytes, at: int, end: int, count: int, cnames: dict[int, str]) -> None:
    """RFC 3550 6.5: chunks of an SSRC and items, each chunk ending in a zero octet and
    padded to 32 bits."""
    for _c in range(min(count, MAX_CHUNKS)):
        if at + 4 > end:
            raise RtpError("RTCP SDES chunk is truncated")
        ssrc = struct.unpack_from("!I", pkt, at)[0]
        at += 4
        while True:
            if at >= end:
                raise RtpError("RTCP SDES items run past the packet")
            item = pkt[at]
            if item == 0:
                at = (at + 4) & ~3  # the null octet, then padding to the next word
                break
            if at + 2 > end or at + 2 + pkt[at + 1] > end:
                raise RtpError("RTCP SDES item runs past the packet")
            size = pkt[at + 1]
            if item == SDES_CNAME:
                cnames[ssrc] = pkt[at + 2:at + 2 + size].decode("utf-8", "replace")
            at += 2 + size


def _xr(pkt: bytes, at: int, end: int, voip: list[VoipMetrics]) -> None:
    """RFC 3611 section 3: report blocks after the sender's SSRC; only VoIP metrics kept."""
    while at + 4 <= end:
        block_type, _spec, words = _HDR.unpack_from(pkt, at)
        nxt = at + 4 + words * 4
        if nxt > end:
            raise RtpError("RTCP XR block runs past the packet")
        if block_type == XR_VOIP_METRICS:
            if words != 8:
                raise RtpError("RTCP XR VoIP metrics block is not 8 words")
            voip.append(VoipMetrics(pkt, at + 4))
        at = nxt
