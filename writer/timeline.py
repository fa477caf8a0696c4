"""Placing each direction's RTP on the call's capture-time axis.

A direction is cut into segments, each with one mapping from RTP time to capture time:
a new SSRC, a new clock rate, or RTP time jumping more than ``JUMP_SECONDS`` against
capture time starts a new one. Within a segment a packet's position is its extended RTP
timestamp plus the segment's smallest transit (capture time minus RTP time), so packets
sit where the least-delayed packet says the sender's clock is: jitter and reordering do
not move audio, loss and silence suppression leave silence, and both directions share
the capture clock, so cross-talk lines up.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from capture import overlap
from capture.distinct import present

# RTP time may drift from capture time by this much before we re-anchor (timestamp jump).
JUMP_SECONDS = 1
# Segments per direction; each costs a few ints. A stream that jumps more often than this
# is broken; further jumps reuse the last segment rather than growing the list.
MAX_SEGMENTS = 4096


class Segmenter:
    """Assigns each packet of one direction a segment and an extended RTP timestamp."""

    __slots__ = ("ssrc", "clock", "index", "ref", "_last", "_ext", "_seq", "capped")

    def __init__(self) -> None:
        self.ssrc = -1
        self.clock = 0
        self.index = -1
        self.ref = 0
        self._last = 0  # RTP timestamp of the last packet placed
        self._ext = 0  # its extended value
        self._seq = 0
        self.capped = 0
        """Jumps that had to reuse the last segment because of MAX_SEGMENTS."""

    def place(self, ssrc: int, clock: int, seq: int, rtp_ts: int, cap: int) -> tuple[int, int]:
        """(segment index, extended timestamp), or (-1, 0) for a packet that arrived far too
        late to place; ``cap`` is capture time in ``clock`` units; ``ssrc`` is the stream's
        identity (callers may fold more into it, such as the flow)."""
        if ssrc == self.ssrc and clock == self.clock:
            # wrap-safe extension (writer.seqnum.ts_delta), inlined: this runs per packet
            ext = self._ext + ((rtp_ts - self._last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            newer = ((seq - self._seq + 0x8000) & 0xFFFF) - 0x8000 > 0
            if abs(cap - ext - self.ref) <= JUMP_SECONDS * clock:
                self._last, self._ext = rtp_ts, ext
                if newer:
                    # Follow the newest transit: a sender clock that drifts against the
                    # capture clock moves it slowly; only a sudden move is a jump.
                    self._seq = seq
                    self.ref = cap - ext
                return self.index, ext
            if not newer:
                # An old sequence number far off the mapping is a straggler (a late copy from
                # a second mirror), not a timestamp jump: only newer packets re-anchor.
                return -1, 0
        self._seq = seq
        if self.index + 1 < MAX_SEGMENTS:
            self.index += 1
        else:
            self.capped += 1
        self.ssrc, self.clock = ssrc, clock
        self._last = self._ext = rtp_ts
        self.ref = cap - rtp_ts
        return self.index, rtp_ts


# Transit floor buckets per segment: the floor is the smallest transit per stretch of RTP
# time; 512 stretches fit a line through a call of any length (they widen as it grows).
MAX_BUCKETS = 512
BUCKET_SECONDS = 1
# A fitted drift beyond 1% is not a sender clock, it is broken data: use no slope.
MAX_DRIFT = 0.01
# Drift is corrected once it adds up to a packet time over a segment.
MIN_DRIFT_SECONDS = 0.02


class Segment:
    """One clock mapping of a direction: RTP time to capture time, with the sender's clock
    drift against the capture clock fitted as a line through the transit floor."""

    __slots__ = (
        "ssrc", "clock", "min_transit", "min_ext", "max_ext", "first_ns", "last_ns", "codec",
        "shift", "e0", "width", "buckets", "a", "b", "packets", "gap_samples",
    )

    def __init__(self, ssrc: int, clock: int, transit: int, ext: int, ts_ns: int, codec: str):
        self.ssrc = ssrc
        """SSRC of the segment."""
        self.clock = clock
        """RTP clock rate."""
        self.min_transit = transit
        """Smallest capture-minus-RTP time seen, in clock units."""
        self.min_ext = ext
        """Smallest extended timestamp seen."""
        self.max_ext = ext
        """Largest extended timestamp seen."""
        self.first_ns = ts_ns
        """Capture time of its first packet."""
        self.last_ns = ts_ns
        """Capture time of its last packet."""
        self.codec = codec
        """Codec of its first packet."""
        self.shift = 0
        """Output samples the segment moves back when a capture-clock jump is collapsed."""
        self.packets = 0
        """Packets placed from it."""
        self.gap_samples = 0
        """Silence filled inside it (loss, silence suppression), in output samples."""
        self.e0 = ext
        self.width = BUCKET_SECONDS * clock
        self.buckets: dict[int, tuple[int, int]] = {0: (transit, ext)}
        self.a = float(transit)
        """Transit floor at ``e0`` (clock units), after ``fit``."""
        self.b = 0.0
        """Transit change per RTP clock unit: the sender's drift (0.0005 = 0.05% fast)."""

    def add(self, ext: int, transit: int, ts_ns: int) -> None:
        self.min_transit = min(self.min_transit, transit)
        self.min_ext = min(self.min_ext, ext)
        self.max_ext = max(self.max_ext, ext)
        self.last_ns = ts_ns
        k = (ext - self.e0) // self.width
        cur = self.buckets.get(k)
        if cur is None or transit < cur[0]:
            self.buckets[k] = (transit, ext)
        if len(self.buckets) > MAX_BUCKETS:
            self.width *= 2
            merged: dict[int, tuple[int, int]] = {}
            for key, val in self.buckets.items():
                merged[key // 2] = min(val, merged.get(key // 2, val))
            self.buckets = merged

    def fit(self) -> None:
        """Fit the transit floor: a line through the smallest transit of each stretch."""
        if len(self.buckets) < 3:
            self.a, self.b = float(self.min_transit), 0.0
            return
        # each stretch's least-delayed packet, where it was: points on the transit floor
        pts = np.array(list(self.buckets.values()), dtype=np.float64)
        ys, xs = pts[:, 0], pts[:, 1] - self.e0
        b = float(np.polyfit(xs, ys, 1)[0])
        span = float(xs.max() - xs.min())
        # Correct only a drift that moves audio by at least a packet time over the segment
        # and is plausible for a clock; otherwise the slope is jitter and the constant
        # floor (the least-delayed packet) is exact.
        if abs(b) > MAX_DRIFT or abs(b) * span < MIN_DRIFT_SECONDS * self.clock:
            self.a, self.b = float(self.min_transit), 0.0
            return
        # the lowest line with that slope that no packet undercuts
        self.a, self.b = float((ys - b * xs).min()), b

    def floor(self, ext: int) -> int:
        """Transit floor at extended timestamp ``ext``."""
        return round(self.a + self.b * (ext - self.e0))

    def start(self) -> int:
        """Earliest position of the segment, in clock units from the origin."""
        return self.min_ext + self.floor(self.min_ext)

    def end(self) -> int:
        """Position of its last packet's start, in clock units from the origin."""
        return self.max_ext + self.floor(self.max_ext)


# A silence longer than this between segments is taken for a capture clock that jumped
# (broken timestamps), not a pause in the call: it is collapsed to one second, so a bad
# clock cannot produce hours of silent audio.
MAX_GAP_SECONDS = 3600


def collapse_gaps(segments: list[Segment], rate: int) -> int:
    """Set ``shift`` on segments that follow a gap longer than MAX_GAP_SECONDS; returns how
    many gaps were collapsed."""
    collapsed = 0
    shift = 0
    covered = None
    for seg in sorted(segments, key=lambda s: s.start() * rate // s.clock):
        start = seg.start() * rate // seg.clock - shift
        if covered is not None and start - covered > MAX_GAP_SECONDS * rate:
            shift += start - covered - rate
            collapsed += 1
        seg.shift = shift
        end = seg.end() * rate // seg.clock - shift
        covered = end if covered is None else max(covered, end)
    return collapsed


Int16Array = npt.NDArray[np.int16]


def _scatter(block: Int16Array, lo: int, start: npt.NDArray[np.int64],
             src: npt.NDArray[np.int64], length: npt.NDArray[np.int64],
             channel: npt.NDArray[np.int64], law: npt.NDArray[np.int64],
             data: npt.NDArray[np.uint8]) -> None:
    """Decode G.711 payloads (``law`` 0: mu-law, 1: A-law) that overlap no other and write
    them into ``block`` (frames by channels: ``block[f - lo, c]``), clipped to it. Payloads
    of one length on one grid (the usual 20 ms packets of one clock mapping) go in as rows
    of a matrix view of the channel's column; the rest sample by sample."""
    from writer.g711 import ALAW_DECODE, ULAW_DECODE, decode_pairs

    width = block.shape[0]
    inside = (start >= lo) & (start + length <= lo + width)
    for size in present(length[inside]):
        if not size:
            continue
        k = np.arange(size)
        # the capture as overlapping rows of ``size`` bytes, one starting at every byte: a
        # payload is one row, gathered whole rather than byte by byte through an index
        # array eight times its size
        rows_at = overlap.rows(data, size)
        for c in (0, 1):
            for which, table in ((0, ULAW_DECODE), (1, ALAW_DECODE)):
                g = np.flatnonzero(inside & (length == size) & (law == which) & (channel == c))
                if not len(g):
                    continue
                rel = start[g] - lo
                phase = int(rel[0]) % size
                on_grid = rel % size == phase
                decoded = (decode_pairs(rows_at[src[g]], which) if size % 2 == 0
                           else table.take(rows_at[src[g]]))
                rows = (width - phase) // size
                # a view: splitting the column's one strided axis needs no copy
                grid = block[phase:phase + rows * size, c].reshape(rows, size)
                if on_grid.all():
                    grid[rel // size] = decoded  # phase < size: the same rows
                    continue
                grid[(rel[on_grid] - phase) // size] = decoded[on_grid]
                off = np.flatnonzero(~on_grid)
                at = rel[off][:, None] + k
                block[at.ravel(), c] = decoded[off].ravel()
    rest = np.flatnonzero(~inside & (length > 0))
    if not len(rest):
        return
    start, src, length = start[rest], src[rest], length[rest]
    channel, law = channel[rest], law[rest]
    k = np.arange(int(length.max()))
    at = start[:, None] + k  # frame of each sample
    ok = (k < length[:, None]) & (at >= lo) & (at < lo + width)
    rows_, cols = np.nonzero(ok)
    codes = data[src[rows_] + cols]
    samples = np.where(law[rows_] == 1, ALAW_DECODE[codes], ULAW_DECODE[codes])
    block[at[rows_, cols] - lo, channel[rows_]] = samples


# Seconds of stereo audio held before it is written: reordering or jitter deeper than this
# makes a packet "late" and it is dropped (counted). 8 s covers the 2 s segment tolerance.
WINDOW_SECONDS = 8


class StereoWindow:
    """A sliding two-channel buffer that writes finished audio to ``sink`` in order."""

    def __init__(self, rate: int, sink: Callable[[Int16Array], None]) -> None:
        self.size = rate * WINDOW_SECONDS
        self._buf: Int16Array = np.zeros((self.size, 2), dtype=np.int16)
        self._base = 0
        self._high = 0
        self._sink = sink
        self.late_samples = [0, 0]
        """Per channel, samples dropped because they arrived after their place was written."""
        self.written = 0
        """Frames handed to the sink."""

    def put(self, channel: int, pos: int, samples: Int16Array) -> None:
        """Write ``samples`` into ``channel`` starting at frame ``pos``."""
        if len(samples) > self.size:  # no real packet holds 8 s; keep the bound anyway
            samples = samples[: self.size]
        n = len(samples)
        if pos < self._base:
            cut = min(n, self._base - pos)
            self.late_samples[channel] += cut
            samples = samples[cut:]
            pos += cut
            n -= cut
            if n == 0:
                return
        end = pos + n
        if end > self._base + self.size:
            # Flush at least half a window at a time so the copy cost stays amortised,
            # but never past this packet's start (a packet over half a window long).
            self._advance(max(end - self.size, min(self._base + self.size // 2, pos)))
        off = pos - self._base
        self._buf[off : off + n, channel] = samples
        self._high = max(self._high, end)

    def _advance(self, new_base: int) -> None:
        k = new_base - self._base
        if k <= 0:
            return
        keep = max(0, self.size - k)
        emit = min(k, self.size)
        self._sink(self._buf[:emit])
        self.written += emit
        gap = k - emit
        while gap > 0:  # a silent stretch longer than the window, written a window at a time
            step = min(gap, self.size)
            self._sink(np.zeros((step, 2), dtype=np.int16))
            self.written += step
            gap -= step
        self._buf[:keep] = self._buf[emit : emit + keep]
        self._buf[keep:] = 0
        self._base = new_base

    def fill(self, start: npt.NDArray[np.int64], src: npt.NDArray[np.int64],
             length: npt.NDArray[np.int64], channel: npt.NDArray[np.int64],
             law: npt.NDArray[np.int64], data: npt.NDArray[np.uint8], high: int) -> None:
        """Write G.711 payloads (``law`` 0: mu-law, 1: A-law) of ``length`` bytes at
        ``data[src]`` to frames from ``start`` in ``channel``, in the order given, then
        everything up to ``high``: what ``put`` one payload after another, then ``close``,
        would write, given none of them arrives after its place was written (the caller
        has cut those). Frames are written a window at a time."""
        end = start + length
        # a packet overlapping another of its channel is written after the rest, in order,
        # so the later one wins (numpy leaves the winner of a repeated index open)
        order = np.lexsort((start, channel))
        s_sorted, e_sorted, c_sorted = start[order], end[order], channel[order]
        overlap = np.zeros(len(start), np.bool_)
        if len(start) > 1:
            same = c_sorted[1:] == c_sorted[:-1]
            hit = np.zeros(len(start), np.bool_)
            run_end = e_sorted.copy()
            # running max of ends within each channel's run
            bounds = np.flatnonzero(np.r_[True, ~same])
            for a, b in zip(bounds.tolist(), np.r_[bounds[1:], len(start)].tolist(),
                            strict=True):
                run_end[a:b] = np.maximum.accumulate(e_sorted[a:b])
            hit[1:] = same & (s_sorted[1:] < run_end[:-1])
            hit[:-1] |= same & (e_sorted[:-1] > s_sorted[1:])
            overlap[order] = hit
        by_start = np.argsort(start, kind="stable")
        starts_sorted = start[by_start]
        lo = self._base
        while lo < high:
            hi = min(high, lo + self.size)
            block = np.zeros((hi - lo, 2), np.int16)
            a = int(np.searchsorted(starts_sorted, lo - self.size, "left"))
            b = int(np.searchsorted(starts_sorted, hi, "left"))
            sel = np.sort(by_start[a:b])  # capture order
            sel = sel[end[sel] > lo]
            if len(sel):
                bulk = sel[~overlap[sel]]
                if len(bulk):
                    _scatter(block, lo, start[bulk], src[bulk], length[bulk],
                             channel[bulk], law[bulk], data)
                for k in sel[overlap[sel]].tolist():
                    _scatter(block, lo, start[k:k + 1], src[k:k + 1], length[k:k + 1],
                             channel[k:k + 1], law[k:k + 1], data)
            self._sink(block)
            self.written += hi - lo
            lo = hi
        self._base = max(self._base, high)
        self._high = max(self._high, high)
        self._buf[:] = 0

    def close(self) -> None:
        """Write everything up to the last sample placed."""
        if self._high > self._base:
            self._sink(self._buf[: self._high - self._base])
            self.written += self._high - self._base
            self._base = self._high
