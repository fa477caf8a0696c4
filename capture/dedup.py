"""Duplicate suppression: the same packet seen twice (two SPAN sessions, both directions
mirrored on two ports) is kept once. Sans-IO, bounded, driven by capture time."""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from capture.index import PacketIndex
from capture.vector import UdpBatch

# Copies from two mirror sessions arrive within microseconds to milliseconds; SIP's own
# retransmissions come 500 ms apart (RFC 3261 T1) and must be kept.
WINDOW_NS = 100_000_000
# Packets remembered at once: a window's worth on a busy 1 Gbit/s tap.
MAX_ENTRIES = 65_536


class Deduplicator:
    """Remembers packet hashes for ``window_ns`` of capture time."""

    def __init__(self, window_ns: int = WINDOW_NS, max_entries: int = MAX_ENTRIES) -> None:
        self.window_ns = window_ns
        self.max_entries = max_entries
        # two deques of plain ints rather than one of (time, key) tuples: a tuple per
        # remembered packet was the larger part of a live call's dedup memory
        self._times: deque[int] = deque()
        self._keys: deque[int] = deque()
        self._seen: dict[int, int] = {}
        self.duplicates = 0

    def seen(self, ts_ns: int, key: int) -> bool:
        """True when ``key`` was seen within the window (a duplicate, to be dropped)."""
        times, keys, seen = self._times, self._keys, self._seen
        limit = ts_ns - self.window_ns
        while times and (times[0] < limit or len(times) >= self.max_entries):
            old_ts = times.popleft()
            old_key = keys.popleft()
            if seen.get(old_key) == old_ts:
                del seen[old_key]
        last = seen.get(key)
        if last is not None and abs(ts_ns - last) <= self.window_ns:
            self.duplicates += 1
            return True
        seen[key] = ts_ns
        times.append(ts_ns)
        keys.append(key)
        return False


# Odd 64-bit multipliers (splitmix64's and xxHash's): each column's bits spread over the mix.
_MULTIPLIERS = tuple(np.uint64(k) for k in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F,
                                            0x165667B19E3779F9, 0xD6E8FEB86659FD93))


def _mix(cols: tuple[npt.NDArray[np.int64], ...]) -> npt.NDArray[np.uint64]:
    """One 64-bit value per row of the key columns; equal rows give equal values."""
    out = np.zeros(len(cols[0]), np.uint64)
    with np.errstate(over="ignore"):
        for c, k in zip(cols, _MULTIPLIERS, strict=True):
            out ^= c.view(np.uint64) * k
            out ^= out >> np.uint64(29)
    return out


def _adjacent_equal(cols: tuple[npt.NDArray[np.int64], ...], order: npt.NDArray[np.int64]
                    ) -> npt.NDArray[np.bool_]:
    """Whether each row in ``order`` has the same key as the one after it."""
    same = np.ones(max(len(order) - 1, 0), np.bool_)
    for c in cols:
        cs = c[order]
        same &= cs[1:] == cs[:-1]
    return same


def duplicates(index: PacketIndex, udp: UdpBatch, fast: npt.NDArray[np.bool_], window: int,
               tail: dict[tuple[int, ...], int]
               ) -> tuple[npt.NDArray[np.bool_], dict[tuple[int, ...], int]]:
    """The Deduplicator's verdict on the ``fast`` packets of an indexed capture (RTP-like),
    on columns: a packet is a duplicate when the same 5-tuple, size and first 16 payload
    bytes (RTP header, sequence and timestamp included) came within ``window`` ns of the
    last copy kept. ``tail`` is what the previous window of the index left (the last copy
    kept of each packet near its end); returns the verdicts and the tail for the next."""
    idx = np.flatnonzero(fast)
    dup = np.zeros(len(index), np.bool_)
    if not len(idx):
        return dup, tail
    first, second = udp.lead[idx, 0], udp.lead[idx, 1]
    cols = (udp.src[idx] << 32 | udp.dst[idx], udp.sport[idx] << 32 | udp.dport[idx] << 16
            | udp.size[idx], first, second)
    # equal keys made adjacent by one sort of a 64-bit mix of them, not a sort on four
    # keys; two keys of one mix (a collision) side by side take the exact sort instead
    mixed = _mix(cols)
    order = np.argsort(mixed, kind="stable")
    m = mixed[order]
    same = _adjacent_equal(cols, order)
    if not np.array_equal(m[1:] == m[:-1], same):
        order = np.lexsort((idx, *cols))
        same = _adjacent_equal(cols, order)
    ts = index.ts_ns
    # groups of equal packets, in capture order: a copy within the window of the
    # last one kept is a duplicate; a group may go on from the index's last window
    starts = np.flatnonzero(np.r_[True, ~same])
    ends = np.r_[starts[1:], len(idx)]
    group = np.empty(len(idx), np.int64)
    group[order] = np.repeat(np.arange(len(starts)), ends - starts)
    anchor: dict[int, int] = {}
    if tail:
        t0 = int(ts[idx[0]])
        early = np.flatnonzero(ts[idx] <= t0 + window)
        for j in early.tolist():
            key = tuple(int(c[j]) for c in cols)
            if key in tail:
                anchor.setdefault(int(group[j]), tail[key])
    todo = set(np.flatnonzero(ends - starts > 1).tolist()) | set(anchor)
    for g in sorted(todo):
        members = idx[order[starts[g]:ends[g]]].tolist()
        kept = anchor.get(g)
        for m in members:
            t = int(ts[m])
            if kept is not None and abs(t - kept) <= window:
                dup[m] = True
            else:
                kept = t
    # what the next window of the index must know: the last copy kept of each packet
    # seen within the window of this one's end
    t_end = int(ts[idx[-1]])
    recent = np.flatnonzero((ts[idx] >= t_end - window) & ~dup[idx])
    after = {k: t for k, t in tail.items() if t >= t_end - window}
    for j in recent.tolist():
        after[tuple(int(c[j]) for c in cols)] = int(ts[idx[j]])
    return dup, after
