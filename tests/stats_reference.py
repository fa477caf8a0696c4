"""The per-packet definition of writer.stats, kept as the oracle its numpy batches are
tested against: every rule written out one packet at a time, as Wireshark's RTP analysis
and RFC 3550 A.1, A.3 and A.8 state them."""

from __future__ import annotations

from collections import deque
from typing import Any

from writer.jitterbuf import JitterBuffer
from writer.stats import stream_json

# Recent sequence numbers remembered per SSRC to spot duplicates: a few seconds of packets,
# more than any reordering a capture shows.
DUP_WINDOW = 512
# RFC 3389 comfort noise and the payload type RFC 1890 used for it before.
CN_TYPES = (13, 19)


class StreamStats:
    """Counters for one SSRC of one direction. ``add`` is on the per-packet path: one method,
    locals and slots, no helper calls but on rare branches."""

    __slots__ = (
        "ssrc", "clock", "packets", "received", "duplicates", "out_of_order", "base_seq",
        "max_seq", "_ext_seq", "_last_seq", "_recent", "_recent_set", "first_ns", "last_ns",
        "payload_types", "markers", "bytes", "seq_errors", "_time", "_first_ts", "_prev_pt",
        "jitter", "jitter_max", "jitter_min", "jitter_mean", "delta", "delta_min",
        "delta_max", "delta_mean", "_nominal", "skew", "skew_max", "_fit", "jb", "_jb_seq",
        "_jb_since", "_sec", "_sec_first", "_sec_last", "_sec_count", "worst_second_loss",
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
        self._ext_seq = 0
        self._last_seq = 0
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()
        self.first_ns = 0
        self.last_ns = 0
        self.payload_types: set[int] = set()
        self.markers = 0
        self.bytes = 0
        self.seq_errors = 0
        """Packets whose sequence number is not one past the highest before it (after a
        gap, late, or repeated)."""
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
        self._fit = [0, 0.0, 0.0, 0.0, 0.0]
        """n, sums of capture time, sender time, their squares' and product's, for the
        least-squares drift."""
        self.jb = jitter_buffer or JitterBuffer()
        self._jb_seq = -1
        self._jb_since = 0
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
        if marker:
            self.markers += 1
        if pt != self._prev_pt:
            self.payload_types.add(pt)
        if self.received == 1:
            self.first_ns = self.last_ns = ts_ns
            self._first_ts, self._prev_pt, self._last_seq, self._ext_seq = rtp_ts, pt, seq, seq
            ext = seq
            t = 0.0
            since = 0
        else:
            # RFC 3550 A.1: extend the 16-bit number against the previous packet's
            ext = self._ext_seq = self._ext_seq + ((seq - self._last_seq + 0x8000) & 0xFFFF) \
                - 0x8000
            self._last_seq = seq
            t = (ts_ns - self.first_ns) / 1e6
            since = (rtp_ts - self._first_ts) & 0xFFFFFFFF
            # Wireshark's analysis: only packets not before the first one's timestamp count
            # as in order; their arrival and timestamp are the reference for the next one.
            in_order = since < 0x80000000
            if in_order:
                if clock:
                    nominal = since * 1000.0 / clock
                    diff = t - (self._time + nominal - self._nominal)
                    jitter = self.jitter = (15.0 * self.jitter + (diff if diff >= 0 else -diff)
                                            ) / 16.0
                    self._nominal = nominal
                    skew = self.skew = nominal - t
                    if abs(skew) > abs(self.skew_max):
                        self.skew_max = skew
                    fit = self._fit
                    fit[0] += 1
                    fit[1] += t
                    fit[2] += nominal
                    fit[3] += t * t
                    fit[4] += t * nominal
                delta = self.delta = t - self._time
                self._time = t
                prev_pt = self._prev_pt
                if not marker and pt != 13 and pt != 19 and prev_pt != 13 and prev_pt != 19:
                    # regular: Wireshark's running means divide by every packet before it
                    n = self.received - 1
                    if delta > self.delta_max:
                        self.delta_max = delta
                    if delta < self.delta_min or self.delta_min < 0:
                        self.delta_min = delta
                    self.delta_mean = (self.delta_mean * (n - 1) + delta) / n
                    if clock:
                        if jitter > self.jitter_max:
                            self.jitter_max = jitter
                        if jitter < self.jitter_min or self.jitter_min < 0:
                            self.jitter_min = jitter
                        self.jitter_mean = (self.jitter_mean * (n - 1) + jitter) / n
            else:
                since -= 0x100000000
            self._prev_pt = pt
        # RFC 3550 A.1/A.3 counters over unique packets
        recent = self._recent_set
        if ext in recent:
            self.duplicates += 1
            self.seq_errors += 1
            return False
        self._recent.append(ext)
        recent.add(ext)
        if len(recent) > DUP_WINDOW:
            recent.discard(self._recent.popleft())
        if self.packets == 0:
            self.base_seq = self.max_seq = ext
        elif ext == self.max_seq + 1:
            self.max_seq = ext
        else:
            self.seq_errors += 1
            if ext < self.max_seq:
                self.out_of_order += 1
                if ext < self.base_seq:
                    self.base_seq = ext
            else:
                self.max_seq = ext
        self.packets += 1
        if ts_ns > self.last_ns:
            self.last_ns = ts_ns
        sec = (ts_ns - self.first_ns) // 1_000_000_000
        if sec != self._sec:
            self._new_second(sec, ext)
        if ext < self._sec_first:
            self._sec_first = ext
        if ext > self._sec_last:
            self._sec_last = ext
        self._sec_count += 1
        if clock:
            if ext > self._jb_seq >= 0 and since < self._jb_since:
                # The timestamp ran backwards while the sequence went on (a sender restart,
                # a codec switch): the buffer starts again from this packet.
                self.jb.restart()
            self.jb.add(t - since * 1000.0 / clock, self.jitter, marker)
            if ext > self._jb_seq:
                self._jb_seq, self._jb_since = ext, since
        return True

    def _new_second(self, sec: int, ext: int) -> None:
        """Per-second loss, kept as a running worst: no per-second history is stored."""
        self._close_second()
        # a second expects what follows the previous second's highest sequence number
        first = self._sec_last + 1 if self._sec >= 0 else ext
        self._sec, self._sec_first, self._sec_last, self._sec_count = sec, first, ext, 0

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
        n, sx, sy, sxx, sxy = self._fit
        var = n * sxx - sx * sx
        if n < 2 or var <= 0:
            return 0.0
        return ((n * sxy - sx * sy) / var - 1.0) * 1e6

    def to_json(self) -> dict[str, Any]:
        self._close_second()
        return stream_json(self)
