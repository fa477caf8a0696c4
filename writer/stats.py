"""Per-SSRC RTP reception statistics (RFC 3550 section 6.4.1 and appendix A.1, A.3, A.8).

Two views of one stream, both fed every packet:
- RFC 3550 reception counts over unique packets: expected, lost, duplicates, reordering.
- The interarrival delta, jitter and clock skew columns exactly as Wireshark's RTP stream
  analysis defines them, so a user comparing with `tshark -z rtp,streams` sees the same
  numbers. Its jitter is RFC 3550 A.8 computed in milliseconds over packets whose timestamp
  is not before the stream's first; its mean, minimum and maximum cover "regular" packets only
  (not the first, not marker-bit, comfort-noise or out-of-timestamp-order packets), the mean
  divides by every packet before it, and its packet count and signed loss include duplicates.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from writer.jitterbuf import JitterBuffer
from writer.seqnum import Extender

# Recent sequence numbers remembered per SSRC to spot duplicates: a few seconds of packets,
# more than any reordering a capture shows.
DUP_WINDOW = 512
# RFC 3389 comfort noise and the payload type RFC 1890 used for it before.
CN_TYPES = (13, 19)


class StreamStats:
    """Counters for one SSRC of one direction."""

    __slots__ = (
        "ssrc", "clock", "packets", "received", "duplicates", "out_of_order", "base_seq",
        "max_seq", "_ext", "_ts_ext", "_recent", "_recent_set", "first_ns", "last_ns",
        "payload_types", "markers", "bytes", "seq_errors", "_seq16", "_time", "_first_ts",
        "_prev_pt", "jitter", "jitter_max", "jitter_min", "jitter_mean", "delta",
        "delta_min", "delta_max", "delta_mean", "_nominal", "skew", "skew_max",
        "_fit_n", "_fit_mx", "_fit_my", "_fit_cxx", "_fit_cxy", "jb", "_jb_seq", "_jb_ts",
        "_sec", "_sec_first", "_sec_last", "_sec_count", "worst_second_loss",
    )

    def __init__(self, ssrc: int, clock: int, jitter_buffer: JitterBuffer | None = None
                 ) -> None:
        self.ssrc = ssrc
        self.clock = clock
        """The stream's usual RTP clock, used when a packet does not name its own."""
        self.packets = 0
        """Unique packets (duplicates removed)."""
        self.received = 0
        """Every packet seen, duplicates included (RFC 3550 A.3's "received")."""
        self.duplicates = 0
        self.out_of_order = 0
        self.base_seq = -1
        self.max_seq = -1
        self._ext = Extender(16)
        self._ts_ext = Extender(32)
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()
        self.first_ns = 0
        self.last_ns = 0
        self.payload_types: set[int] = set()
        self.markers = 0
        self.bytes = 0
        self.seq_errors = 0
        """Sequence numbers that did not follow the previous one (lost, late or repeated)."""
        self._seq16 = 0
        self._time = 0.0
        self._first_ts = 0
        self._prev_pt = -1
        self.jitter = 0.0
        """Current interarrival jitter in ms."""
        self.jitter_max = 0.0
        self.jitter_min = -1.0
        self.jitter_mean = 0.0
        self.delta = 0.0
        self.delta_min = -1.0
        self.delta_max = 0.0
        self.delta_mean = 0.0
        self._nominal = 0.0
        self.skew = 0.0
        """Sender clock minus capture clock since the first packet, in ms (positive: the
        sender's RTP clock runs ahead)."""
        self.skew_max = 0.0
        self._fit_n = 0
        self._fit_mx = self._fit_my = self._fit_cxx = self._fit_cxy = 0.0
        self.jb = jitter_buffer or JitterBuffer()
        self._jb_seq = -1
        self._jb_ts = 0
        self._sec = -1
        self._sec_first = self._sec_last = self._sec_count = 0
        self.worst_second_loss = 0.0
        """Highest loss percentage of any whole second with at least 10 packets expected."""

    def add(self, seq: int, rtp_ts: int, ts_ns: int, pt: int, marker: bool = False,
            clock: int = -1, size: int = 0) -> bool:
        """Count one packet; False when it is a duplicate and must not be played. ``clock`` is
        the packet's RTP clock (0 when its timestamps do not advance with time, as RFC 4733
        events'), by default the stream's."""
        if clock < 0:
            clock = self.clock
        self.received += 1
        self.bytes += size
        self.markers += marker
        self.payload_types.add(pt)
        ext_ts = self._ts_ext.extend(rtp_ts)
        if self.received == 1:
            self.first_ns = self.last_ns = ts_ns
            self._seq16, self._first_ts, self._prev_pt = seq, rtp_ts, pt
        else:
            self._timing(seq, rtp_ts, (ts_ns - self.first_ns) / 1e6, pt, marker, clock)
        return self._count(seq, ext_ts, ts_ns, clock, marker)

    def _timing(self, seq: int, rtp_ts: int, t: float, pt: int, marker: bool, clock: int
                ) -> None:
        """Delta, jitter and skew of one packet after the first (Wireshark's rules)."""
        since_first = (rtp_ts - self._first_ts) & 0xFFFFFFFF
        in_order = since_first < 0x80000000  # not before the first packet's timestamp
        last = self._seq16
        if in_order and (last + 1 == seq or (last == 0xFFFF and seq == 0)):
            self._seq16 = seq
        elif in_order and (last + 1 < seq or last - seq > 0xFF00):
            self._seq16 = seq
            self.seq_errors += 1
        elif last + 1 > seq:
            self.seq_errors += 1
        if in_order:
            if clock:
                nominal = since_first * 1000.0 / clock
                diff = abs(t - (self._time + nominal - self._nominal))
                self.jitter = (15.0 * self.jitter + diff) / 16.0
                self.delta = t - self._time
                self._nominal = nominal
                self.skew = nominal - t
                if abs(self.skew) > abs(self.skew_max):
                    self.skew_max = self.skew
                self._fit(t, nominal)
            else:
                self.delta = t - self._time
        if in_order and not marker and pt not in CN_TYPES and self._prev_pt not in CN_TYPES:
            n = self.received - 1  # deltas so far, this one included
            d = self.delta
            self.delta_max = max(self.delta_max, d)
            self.delta_min = d if self.delta_min < 0 else min(self.delta_min, d)
            self.delta_mean = (self.delta_mean * (n - 1) + d) / n
            if clock:
                self.jitter_max = max(self.jitter_max, self.jitter)
                self.jitter_mean = (self.jitter_mean * (n - 1) + self.jitter) / n
                self.jitter_min = (self.jitter if self.jitter_min < 0
                                   else min(self.jitter_min, self.jitter))
        self._prev_pt = pt
        if in_order:
            self._time = t

    def _fit(self, x: float, y: float) -> None:
        """Running least-squares slope of sender time against capture time (Welford)."""
        self._fit_n += 1
        dx = x - self._fit_mx
        self._fit_mx += dx / self._fit_n
        self._fit_my += (y - self._fit_my) / self._fit_n
        self._fit_cxy += dx * (y - self._fit_my)
        self._fit_cxx += dx * (x - self._fit_mx)

    def _count(self, seq: int, ext_ts: int, ts_ns: int, clock: int, marker: bool) -> bool:
        """RFC 3550 A.1/A.3 counters over unique packets, and the jitter buffer model."""
        ext = self._ext.extend(seq)
        if ext in self._recent_set:
            self.duplicates += 1
            return False
        self._recent.append(ext)
        self._recent_set.add(ext)
        if len(self._recent) > DUP_WINDOW:
            self._recent_set.discard(self._recent.popleft())
        if self.packets == 0:
            self.base_seq = self.max_seq = ext
        elif ext < self.max_seq:
            self.out_of_order += 1
        else:
            self.max_seq = ext
        if ext < self.base_seq:
            self.base_seq = ext
        self.packets += 1
        self.last_ns = max(self.last_ns, ts_ns)
        self._second(ts_ns, ext)
        if clock:
            if ext > self._jb_seq >= 0 and ext_ts < self._jb_ts:
                # The timestamp ran backwards while the sequence went on (a sender restart,
                # a codec switch): the buffer starts again from this packet.
                self.jb.restart()
            delay = (ts_ns - self.first_ns) / 1e6 - ext_ts * 1000.0 / clock
            self.jb.add(delay, self.jitter, marker)
            if ext > self._jb_seq:
                self._jb_seq, self._jb_ts = ext, ext_ts
        return True

    def _second(self, ts_ns: int, ext: int) -> None:
        """Per-second loss, kept as a running worst: no per-second history is stored."""
        sec = (ts_ns - self.first_ns) // 1_000_000_000
        if sec != self._sec:
            self._close_second()
            # a second expects what follows the previous second's highest sequence number
            first = self._sec_last + 1 if self._sec >= 0 else ext
            self._sec, self._sec_first, self._sec_last, self._sec_count = sec, first, ext, 0
        self._sec_first = min(self._sec_first, ext)
        self._sec_last = max(self._sec_last, ext)
        self._sec_count += 1

    def _close_second(self) -> None:
        expected = self._sec_last - self._sec_first + 1
        if self._sec >= 0 and expected >= 10:
            loss = max(0.0, (expected - self._sec_count) * 100.0 / expected)
            self.worst_second_loss = max(self.worst_second_loss, loss)

    @property
    def expected(self) -> int:
        return self.max_seq - self.base_seq + 1 if self.packets else 0

    @property
    def lost(self) -> int:
        """Packets never seen (never negative: duplicates are removed first)."""
        return max(0, self.expected - self.packets)

    @property
    def clock_drift_ppm(self) -> float:
        """How much faster the sender's RTP clock runs than the capture clock."""
        if self._fit_n < 2 or self._fit_cxx <= 0:
            return 0.0
        return (self._fit_cxy / self._fit_cxx - 1.0) * 1e6

    def to_json(self) -> dict[str, Any]:
        self._close_second()
        return {
            "ssrc": f"0x{self.ssrc:08x}",
            "packets": self.packets,
            "received": self.received,
            "expected": self.expected,
            "lost": self.lost,
            # RFC 3550 6.4.1's cumulative number lost: expected minus received, duplicates
            # included, so negative when duplicates outnumber losses (Wireshark's "Lost").
            "cumulative_lost": self.expected - self.received,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "sequence_errors": self.seq_errors,
            # null minimum: no packet was regular
            "delta_ms": {"min": round(self.delta_min, 3) if self.delta_min >= 0 else None,
                         "mean": round(self.delta_mean, 3), "max": round(self.delta_max, 3)},
            "jitter_ms": {"min": round(self.jitter_min, 3) if self.jitter_min >= 0 else None,
                          "mean": round(self.jitter_mean, 3), "max": round(self.jitter_max, 3)},
            "jitter_ms_mean": round(self.jitter_mean, 3),
            "jitter_ms_max": round(self.jitter_max, 3),
            "clock_skew_ms": round(self.skew, 3),
            "clock_skew_ms_max": round(self.skew_max, 3),
            "clock_drift_ppm": round(self.clock_drift_ppm, 1),
            "payload_types": sorted(self.payload_types),
            "marker_bits": self.markers,
            "bytes": self.bytes,
            "jitter_buffer_discards": self.jb.discards,
            "jitter_buffer_ms_mean": round(self.jb.mean_depth_ms, 1),
        }
