"""Duplicate suppression: the same packet seen twice (two SPAN sessions, both directions
mirrored on two ports) is kept once. Sans-IO, bounded, driven by capture time."""

from __future__ import annotations

from collections import deque

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
        self._order: deque[tuple[int, int]] = deque()
        self._seen: dict[int, int] = {}
        self.duplicates = 0

    def seen(self, ts_ns: int, key: int) -> bool:
        """True when ``key`` was seen within the window (a duplicate, to be dropped)."""
        order, seen = self._order, self._seen
        limit = ts_ns - self.window_ns
        while order and (order[0][0] < limit or len(order) >= self.max_entries):
            old_ts, old_key = order.popleft()
            if seen.get(old_key) == old_ts:
                del seen[old_key]
        last = seen.get(key)
        if last is not None and abs(ts_ns - last) <= self.window_ns:
            self.duplicates += 1
            return True
        seen[key] = ts_ns
        order.append((ts_ns, key))
        return False
