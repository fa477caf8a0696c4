"""Per-SSRC RTP reception statistics (RFC 3550 section 6.4.1 and appendix A.1, A.8)."""

from __future__ import annotations

from collections import deque
from typing import Any

from writer.seqnum import Extender

# Recent sequence numbers remembered per SSRC to spot duplicates: a few seconds of packets,
# more than any reordering a capture shows.
DUP_WINDOW = 512


class StreamStats:
    """Counters for one SSRC of one direction."""

    __slots__ = (
        "ssrc",
        "clock",
        "packets",
        "duplicates",
        "out_of_order",
        "base_seq",
        "max_seq",
        "_ext",
        "_recent",
        "_recent_set",
        "_transit",
        "_jitter_seq",
        "_jitter_ts",
        "jitter",
        "jitter_max",
        "_jitter_sum",
        "_jitter_n",
        "first_ns",
        "last_ns",
        "payload_types",
        "jb_ns",
        "jb_discards",
        "_min_delay",
        "_delay",
        "_sec",
        "_sec_first",
        "_sec_last",
        "_sec_count",
        "worst_second_loss",
    )

    def __init__(self, ssrc: int, clock: int, jitter_buffer_ms: float = 60.0) -> None:
        self.ssrc = ssrc
        self.clock = clock
        self.packets = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.base_seq = -1
        self.max_seq = -1
        self._ext = Extender(16)
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()
        self._transit: float | None = None
        self._jitter_seq = -1
        self._jitter_ts = 0
        self.jitter = 0.0
        self.jitter_max = 0.0
        self._jitter_sum = 0.0
        self._jitter_n = 0
        self.first_ns = 0
        self.last_ns = 0
        self.payload_types: set[int] = set()
        self.jb_ns = int(jitter_buffer_ms * 1_000_000)
        """A fixed jitter buffer's depth: packets later than this behind the least-delayed
        one would have been played too late, which a listener hears as loss."""
        self.jb_discards = 0
        self._min_delay = 0.0
        self._delay = 0.0
        self._sec = -1
        self._sec_first = self._sec_last = self._sec_count = 0
        self.worst_second_loss = 0.0
        """Highest loss percentage of any whole second with at least 10 packets expected."""

    def add(self, seq: int, rtp_ts: int, ts_ns: int, pt: int) -> bool:
        """Count one packet; False when it is a duplicate and must not be played."""
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
            self.first_ns = ts_ns
        elif ext < self.max_seq:
            self.out_of_order += 1
        else:
            self.max_seq = ext
        if ext < self.base_seq:
            self.base_seq = ext
        self.packets += 1
        self.last_ns = max(self.last_ns, ts_ns)
        self.payload_types.add(pt)
        # RFC 3550 A.8: interarrival jitter in timestamp units, arrival in the same clock
        # (kept fractional, as Wireshark does, rather than rounded to whole ticks).
        self._second(ts_ns, ext)
        arrival = (ts_ns - self.first_ns) * self.clock / 1e9
        transit = arrival - rtp_ts
        if self._transit is None:
            self._min_delay = self._delay = 0.0
        if self._transit is not None:
            d = transit - self._transit
            # The RTP timestamp wraps at 2**32; bring d back into range.
            if d > 0x80000000:
                d -= 0x100000000
            elif d < -0x80000000:
                d += 0x100000000
            dts = ((rtp_ts - self._jitter_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if ext > self._jitter_seq and dts < 0:
                # The timestamp ran backwards while the sequence went on (a sender restart,
                # a codec switch): no jitter sample, the next one starts from here.
                self._transit, self._jitter_seq, self._jitter_ts = transit, ext, rtp_ts
                self._min_delay = self._delay = 0.0
                return True
            # Delay relative to the least-delayed packet so far, as a fixed jitter buffer
            # anchored on it sees it.
            self._delay += d
            if self._delay < self._min_delay:
                self._min_delay = self._delay
            elif (self._delay - self._min_delay) * 1e9 / self.clock > self.jb_ns:
                self.jb_discards += 1
            self.jitter += (abs(d) - self.jitter) / 16.0
            self.jitter_max = max(self.jitter_max, self.jitter)
            self._jitter_sum += self.jitter
            self._jitter_n += 1
        self._transit = transit
        self._jitter_seq, self._jitter_ts = ext, rtp_ts
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
        # RFC 3550 section 6.4.1: may be negative with duplicates; ours are removed first.
        return max(0, self.expected - self.packets)

    def to_json(self) -> dict[str, Any]:
        self._close_second()
        ms = 1000.0 / self.clock if self.clock else 0.0
        return {
            "ssrc": f"0x{self.ssrc:08x}",
            "packets": self.packets,
            "expected": self.expected,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "jitter_ms_mean": round(self._jitter_sum / self._jitter_n * ms, 3)
            if self._jitter_n
            else 0.0,
            "jitter_ms_max": round(self.jitter_max * ms, 3),
            "payload_types": sorted(self.payload_types),
            "jitter_buffer_discards": self.jb_discards,
        }
