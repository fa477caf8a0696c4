"""Per-SSRC RTP reception statistics (RFC 3550 section 6.4.1 and appendix A.1, A.3, A.8).

Two views of one stream, both fed every packet:
- RFC 3550 reception counts over unique packets: expected, lost, duplicates, reordering.
- The interarrival delta, jitter and clock skew columns exactly as Wireshark's RTP stream
  analysis defines them, so a user comparing with `tshark -z rtp,streams` sees the same
  numbers. Its jitter is RFC 3550 A.8 computed in milliseconds over packets whose timestamp
  is not before the stream's first; its mean, minimum and maximum cover "regular" packets only
  (not the first, not marker-bit, comfort-noise or out-of-timestamp-order packets), the mean
  divides by every packet before it, and its packet count and signed loss include duplicates.

Only the duplicate check runs per packet (the writer must not play a duplicate). Everything
else is computed for a batch of packets at once with numpy, state carried between batches:
``add`` collects up to BATCH packets, ``add_batch`` takes whole arrays (``calltap stats``).
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from capture.distinct import present
from writer.codecs import EVENTS, resolve
from writer.jitterbuf import JitterBuffer

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# Recent sequence numbers remembered per SSRC to spot duplicates: a few seconds of packets,
# more than any reordering a capture shows.
DUP_WINDOW = 512
# Packets collected before a batch is counted: large enough for numpy to pay off, small
# enough (8 arrays of 8 bytes each) to stay a few hundred KiB per stream.
BATCH = 4096
# Jitter samples solved together: (16/15)^256 is 1.5e7, far from float64's limits and
# its rounding.
IIR_BLOCK = 256
_DECAY = (15.0 / 16.0) ** np.arange(1, IIR_BLOCK + 1)
_DECAY_INV = (16.0 / 15.0) ** np.arange(1, IIR_BLOCK + 1)
# RFC 3389 comfort noise and the payload type RFC 1890 used for it before.
CN_TYPES = (13, 19)
# Seconds of per-second quality kept per stream (the dashboard's charts): a day.
MAX_SECONDS = 86_400


def packet_clock(pt: int, rtpmap: dict[int, tuple[str, int, int]]) -> int:
    """The RTP clock a payload type's timestamps run at, 0 when they do not advance with
    time (RFC 4733 section 2.2.1: an event's packets keep its start timestamp) or the type
    is unknown."""
    name, clock, _ = resolve(pt, rtpmap)
    return 0 if name in EVENTS else clock


def _ffill(mask: npt.NDArray[np.bool_]) -> I64:
    """For each position, the index of the latest position at or before it where ``mask``
    holds, -1 if none."""
    return np.maximum.accumulate(np.where(mask, np.arange(len(mask)), -1))


def _running_mean(mean: float, g_prev: int, g: I64, values: F64) -> float:
    """Wireshark's running mean over ``values``, each taken when ``g`` packets preceded it
    (the last one before at ``g_prev``): mean = (mean * (g - 1) + value) / g.

    With S = g * mean that is S_k = S_(k-1) * r_k + v_k, r_k = (g_k - 1) / g_(k-1), solved
    with running products. Each r_k is at least 1 and their product at most g_k / g_1, so
    nothing overflows."""
    if g[0] == 1:  # the stream's second packet: the mean is its value (r would be 0)
        mean, g_prev, g, values = float(values[0]), 1, g[1:], values[1:]
        if not len(g):
            return mean
    gf = g.astype(np.float64)
    prev = np.empty(len(gf))
    prev[0] = g_prev if g_prev > 0 else 1.0
    prev[1:] = gf[:-1]
    ratio = (gf - 1.0) / prev
    prod = np.cumprod(ratio)
    start = mean * prev[0]
    total = prod[-1] * (start + float(np.sum(values / prod)))
    return float(total / gf[-1])


def _iir_jitter(j0: float, diffs: F64) -> F64:
    """RFC 3550 A.8's J = J + (|D| - J) / 16 after each of ``diffs``, from ``j0``: in blocks
    of IIR_BLOCK, each solved in closed form (J_k = a^k (J_0 + sum a^-i D_i / 16))."""
    out = np.empty(len(diffs))
    for a in range(0, len(diffs), IIR_BLOCK):
        d = diffs[a:a + IIR_BLOCK]
        k = np.arange(1, len(d) + 1)
        grow = _DECAY_INV[:len(d)]
        out[a:a + len(d)] = _DECAY[:len(d)] * (j0 + np.cumsum(d * grow) / 16.0)
        del k
        j0 = float(out[a + len(d) - 1])
    return out


class StreamStats:
    """Counters for one SSRC of one direction."""

    __slots__ = (
        "ssrc", "clock", "packets", "received", "duplicates", "out_of_order", "base_seq",
        "max_seq", "_ext_seq", "_last_seq", "_recent", "_recent_set", "first_ns", "last_ns",
        "payload_types", "markers", "bytes", "seq_errors", "_time", "_first_ts", "_prev_pt",
        "jitter", "jitter_max", "jitter_min", "jitter_mean", "delta", "delta_min",
        "delta_max", "delta_mean", "_nominal", "skew", "skew_max", "_fit", "jb", "_jb_seq",
        "_jb_since", "_sec", "_sec_first", "_sec_last", "_sec_count", "worst_second_loss",
        "_sec_jitter", "seconds", "_buf", "_g_delta", "_g_jitter",
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
        self._last_seq = -1
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
        self._fit = [0.0, 0.0, 0.0, 0.0, 0.0]
        """n, sums of capture time, sender time, their squares' and product's, for the
        least-squares drift."""
        self.jb = jitter_buffer or JitterBuffer()
        self._jb_seq = -1
        self._jb_since = 0
        self._sec = -1
        self._sec_first = self._sec_last = self._sec_count = 0
        self._sec_jitter = 0.0
        self.worst_second_loss = 0.0
        """Highest loss percentage of any whole second with at least 10 packets expected."""
        self.seconds: list[tuple[int, int, int, float]] = []
        """Per second of the stream (from ``first_ns``) that had packets, the first
        MAX_SECONDS: (second, packets expected, packets received, mean jitter ms)."""
        self._buf = tuple(array("q") for _ in range(8))
        """Packets not yet counted: extended sequence, timestamp, capture ns, payload type,
        marker, clock, bytes, duplicate."""
        self._g_delta = self._g_jitter = 0
        """Packets before the last regular one (and the last with a clock): the running
        means' divisors."""

    def _extend(self, seq: int) -> int:
        """RFC 3550 A.1: the 16-bit number extended against the previous packet's."""
        if self._last_seq < 0:
            self._ext_seq = seq
        else:
            self._ext_seq += ((seq - self._last_seq + 0x8000) & 0xFFFF) - 0x8000
        self._last_seq = seq
        return self._ext_seq

    def _is_duplicate(self, ext: int) -> bool:
        recent = self._recent_set
        if ext in recent:
            return True
        self._recent.append(ext)
        recent.add(ext)
        if len(recent) > DUP_WINDOW:
            recent.discard(self._recent.popleft())
        return False

    def add(self, seq: int, rtp_ts: int, ts_ns: int, pt: int, marker: bool = False,
            clock: int = -1, size: int = 0) -> bool:
        """Take one packet; False when it is a duplicate and must not be played. ``clock`` is
        the packet's RTP clock (0 when its timestamps do not advance with time, as RFC 4733
        events'), by default the stream's."""
        ext = self._extend(seq)
        dup = self._is_duplicate(ext)
        b = self._buf
        b[0].append(ext)
        b[1].append(rtp_ts)
        b[2].append(ts_ns)
        b[3].append(pt)
        b[4].append(marker)
        b[5].append(self.clock if clock < 0 else clock)
        b[6].append(size)
        b[7].append(dup)
        if len(b[0]) >= BATCH:
            self.flush()
        return not dup

    def add_batch(self, seq: I64, rtp_ts: I64, ts_ns: I64, pt: I64, marker: I64, clock: I64,
                  size: I64) -> npt.NDArray[np.bool_]:
        """Take many packets of the stream at once, in capture order; returns which are
        duplicates (never to be played). Counted in the chunks ``add`` would flush, so both
        give the same figures to the last bit."""
        self.flush()
        if not len(seq):
            return np.zeros(0, np.bool_)
        step = np.empty(len(seq), np.int64)
        if self._last_seq < 0:
            step[0] = seq[0]
        else:
            step[0] = self._ext_seq + ((int(seq[0]) - self._last_seq + 0x8000) & 0xFFFF) - 0x8000
        step[1:] = ((seq[1:] - seq[:-1] + 0x8000) & 0xFFFF) - 0x8000
        ext = np.cumsum(step)
        self._ext_seq, self._last_seq = int(ext[-1]), int(seq[-1])
        recent = np.fromiter(self._recent_set, np.int64, len(self._recent_set))
        ordered = np.sort(ext, kind="stable")  # nearly sorted already: a merge pass
        if not (ordered[1:] == ordered[:-1]).any() and not np.isin(ext, recent).any():
            dup = np.zeros(len(ext), np.bool_)  # the usual case: no repeats at all
            self._recent.extend(ext[-DUP_WINDOW:].tolist())
            while len(self._recent) > DUP_WINDOW:
                self._recent.popleft()
            self._recent_set = set(self._recent)
        else:
            dup = np.fromiter((self._is_duplicate(e) for e in ext.tolist()), np.bool_, len(ext))
        for a in range(0, len(seq), BATCH):
            sl = slice(a, a + BATCH)
            self._count(ext[sl], rtp_ts[sl], ts_ns[sl], pt[sl], marker[sl], clock[sl],
                        size[sl], dup[sl])
        return dup

    def flush(self) -> None:
        """Count the packets collected so far."""
        b = self._buf
        if not len(b[0]):
            return
        e, r, t, p, m, c, z, d = (np.frombuffer(col, np.int64).copy() for col in b)
        for col in b:
            del col[:]
        self._count(e, r, t, p, m, c, z, d.astype(np.bool_))

    def _count(self, ext: I64, rtp_ts: I64, ts_ns: I64, pt: I64, marker: I64, clock: I64,
               size: I64, dup: npt.NDArray[np.bool_]) -> None:
        m = len(ext)
        if m == 0:
            return
        before = self.received
        self.received += m
        self.bytes += int(size.sum())
        self.markers += int(np.count_nonzero(marker))
        self.payload_types.update(present(pt & 0x7F, 128))
        if before == 0:
            self.first_ns = self.last_ns = int(ts_ns[0])
            self._first_ts = int(rtp_ts[0])
            self._prev_pt = int(pt[0])
        t = (ts_ns - self.first_ns) / 1e6
        since = (rtp_ts - self._first_ts) & 0xFFFFFFFF
        in_order = since < 0x80000000
        jitter = self._timing(before, t, since, in_order, pt, marker != 0, clock)
        self._unique(ext, ts_ns, t, since, in_order, marker != 0, clock, dup, jitter)

    def _timing(self, before: int, t: F64, since: I64, in_order: npt.NDArray[np.bool_],
                pt: I64, marker: npt.NDArray[np.bool_], clock: I64) -> F64:
        """Wireshark's delta, jitter and skew; returns the jitter as it stood after each
        packet."""
        m = len(t)
        g = before + np.arange(m)  # packets before each one
        later = g > 0  # the stream's very first packet only sets the references
        io = in_order & later
        # arrival and nominal time of the last in-order packet before each one
        ref = np.where(in_order, np.arange(m), -1)  # the first packet counts as a reference
        prev = np.empty(m, np.int64)
        prev[0] = -1
        prev[1:] = np.maximum.accumulate(ref)[:-1]
        time_prev = np.where(prev >= 0, t[np.maximum(prev, 0)], self._time)
        clocked = io & (clock > 0)
        nominal = np.where(clocked, since * 1000.0 / np.maximum(clock, 1), 0.0)
        cprev = np.empty(m, np.int64)
        cprev[0] = -1
        cprev[1:] = _ffill(clocked)[:-1]
        nominal_prev = np.where(cprev >= 0, nominal[np.maximum(cprev, 0)], self._nominal)
        diff = np.abs(t - (time_prev + nominal - nominal_prev))
        ci = np.flatnonzero(clocked)
        jit_at = _iir_jitter(self.jitter, diff[ci])
        latest = _ffill(clocked)
        jitter = np.where(latest >= 0, np.append(jit_at, 0.0)[np.searchsorted(ci, latest)],
                          self.jitter)
        delta = t - time_prev
        prev_pt = np.empty(m, np.int64)
        prev_pt[0] = self._prev_pt
        prev_pt[1:] = pt[:-1]
        regular = io & ~marker & ~np.isin(pt, CN_TYPES) & ~np.isin(prev_pt, CN_TYPES)
        r = np.flatnonzero(regular)
        if len(r):
            d = delta[r]
            self.delta_max = max(self.delta_max, float(d.max()))
            low = float(d.min())
            self.delta_min = low if self.delta_min < 0 else min(self.delta_min, low)
            self.delta_mean = _running_mean(self.delta_mean, self._g_delta, g[r], d)
            self._g_delta = int(g[r[-1]])
            rc = r[clock[r] > 0]
            if len(rc):
                j = jitter[rc]
                self.jitter_max = max(self.jitter_max, float(j.max()))
                low = float(j.min())
                self.jitter_min = low if self.jitter_min < 0 else min(self.jitter_min, low)
                self.jitter_mean = _running_mean(self.jitter_mean, self._g_jitter, g[rc], j)
                self._g_jitter = int(g[rc[-1]])
        if len(ci):
            skew = nominal[ci] - t[ci]
            big = int(np.argmax(np.abs(skew)))
            if abs(skew[big]) > abs(self.skew_max):
                self.skew_max = float(skew[big])
            self.skew = float(skew[-1])
            self._nominal = float(nominal[ci[-1]])
            x, y = t[ci], nominal[ci]
            f = self._fit
            f[0] += len(ci)
            f[1] += float(x.sum())
            f[2] += float(y.sum())
            f[3] += float((x * x).sum())
            f[4] += float((x * y).sum())
            self.jitter = float(jit_at[-1])
        ios = np.flatnonzero(io)
        if len(ios):
            self.delta = float(delta[ios[-1]])
        if in_order.any():
            self._time = float(t[np.flatnonzero(in_order)[-1]])
        self._prev_pt = int(pt[-1])
        return jitter

    def _unique(self, ext: I64, ts_ns: I64, t: F64, since: I64,
                in_order: npt.NDArray[np.bool_], marker: npt.NDArray[np.bool_], clock: I64,
                dup: npt.NDArray[np.bool_], jitter: F64) -> None:
        """RFC 3550 A.1/A.3 counters over unique packets, per-second loss and the jitter
        buffer model."""
        nd = int(np.count_nonzero(dup))
        self.duplicates += nd
        self.seq_errors += nd
        keep = ~dup
        since = np.where(in_order, since, since - 0x100000000)[keep]
        ext, ts_ns, clock = ext[keep], ts_ns[keep], clock[keep]
        t, jitter, marker = t[keep], jitter[keep], marker[keep]
        if not len(ext):
            return
        if self.packets == 0:
            self.base_seq = self.max_seq = int(ext[0])
            high_before = np.empty(len(ext), np.int64)
            high_before[0] = int(ext[0]) - 1  # the first packet is no error
        else:
            high_before = np.empty(len(ext), np.int64)
            high_before[0] = self.max_seq
        high_before[1:] = np.maximum(np.maximum.accumulate(ext)[:-1], high_before[0])
        self.seq_errors += int(np.count_nonzero(ext != high_before + 1))
        self.out_of_order += int(np.count_nonzero(ext < high_before))
        self.max_seq = max(self.max_seq, int(ext.max()))
        self.base_seq = min(self.base_seq, int(ext.min()))
        self.packets += len(ext)
        self.last_ns = max(self.last_ns, int(ts_ns.max()))
        self._seconds((ts_ns - self.first_ns) // 1_000_000_000, ext, jitter)
        c = np.flatnonzero(clock > 0)
        if len(c):
            e, s = ext[c], since[c]
            # the jitter buffer restarts where the timestamp runs backwards while the
            # sequence goes on (a sender restart, a codec switch)
            top = np.empty(len(c), np.int64)
            top_since = np.empty(len(c), np.int64)
            run = np.maximum.accumulate(e)
            at = _ffill(e >= run)
            top[0], top_since[0] = self._jb_seq, self._jb_since
            top[1:] = np.maximum(run[:-1], self._jb_seq)
            from_here = e[at] >= self._jb_seq
            top_since[1:] = np.where(from_here[:-1], s[at[:-1]], self._jb_since)
            restart = (e > top) & (top >= 0) & (s < top_since)
            delay = t[c] - s * 1000.0 / clock[c]
            self.jb.add_many(delay, jitter[c], marker[c], restart)
            best = int(np.argmax(e))
            if e[best] > self._jb_seq:
                self._jb_seq, self._jb_since = int(e[best]), int(s[best])

    def _seconds(self, sec: I64, ext: I64, jitter: F64) -> None:
        """Per-second loss over runs of packets in the same second, kept as a running worst:
        a second expects what follows the previous second's highest sequence number."""
        starts = np.flatnonzero(np.concatenate(([True], sec[1:] != sec[:-1])))
        lows = np.minimum.reduceat(ext, starts)
        highs = np.maximum.reduceat(ext, starts)
        counts = np.diff(np.append(starts, len(ext)))
        jit = np.add.reduceat(jitter, starts).tolist()
        for k, s in enumerate(sec[starts].tolist()):
            low, high, n = int(lows[k]), int(highs[k]), int(counts[k])
            if s == self._sec:  # the second the last batch ended in goes on
                self._sec_first = min(self._sec_first, low)
                self._sec_last = max(self._sec_last, high)
                self._sec_count += n
                self._sec_jitter += jit[k]
                continue
            self._close_second()
            first = self._sec_last + 1 if self._sec >= 0 else int(ext[starts[k]])
            self._sec, self._sec_first, self._sec_last = s, min(first, low), high
            self._sec_count = n
            self._sec_jitter = jit[k]

    def _close_second(self) -> None:
        expected = self._sec_last - self._sec_first + 1
        if (self._sec >= 0 and len(self.seconds) < MAX_SECONDS
                and (not self.seconds or self.seconds[-1][0] != self._sec)):
            self.seconds.append((self._sec, expected, self._sec_count,
                                 self._sec_jitter / max(self._sec_count, 1)))
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
        self.flush()
        self._close_second()
        return stream_json(self)


def stream_json(s: Any) -> dict[str, Any]:
    """The summary's entry for one stream, from its counters."""
    return {
        "ssrc": f"0x{s.ssrc:08x}",
        "packets": s.packets,
        "received": s.received,
        "expected": s.expected,
        "lost": s.lost,
        # RFC 3550 6.4.1's cumulative number lost: expected minus received, duplicates
        # included, so negative when duplicates outnumber losses (Wireshark's "Lost").
        "cumulative_lost": s.expected - s.received,
        "duplicates": s.duplicates,
        "out_of_order": s.out_of_order,
        "sequence_errors": s.seq_errors,
        # null minimum: no packet was regular
        "delta_ms": {"min": round(s.delta_min, 3) if s.delta_min >= 0 else None,
                     "mean": round(s.delta_mean, 3), "max": round(s.delta_max, 3)},
        "jitter_ms": {"min": round(s.jitter_min, 3) if s.jitter_min >= 0 else None,
                      "mean": round(s.jitter_mean, 3), "max": round(s.jitter_max, 3)},
        "jitter_ms_mean": round(s.jitter_mean, 3),
        "jitter_ms_max": round(s.jitter_max, 3),
        "clock_skew_ms": round(s.skew, 3),
        "clock_skew_ms_max": round(s.skew_max, 3),
        "clock_drift_ppm": round(s.clock_drift_ppm, 1),
        "payload_types": sorted(s.payload_types),
        "marker_bits": s.markers,
        "bytes": s.bytes,
        "jitter_buffer_discards": s.jb.discards,
        "jitter_buffer_ms_mean": round(s.jb.mean_depth_ms, 1),
    }
