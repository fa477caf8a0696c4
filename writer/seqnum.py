"""Wrap-safe RTP sequence number and timestamp arithmetic (RFC 3550 section A.1).

Every comparison of 16-bit sequence numbers or 32-bit timestamps goes through here.
"""

from __future__ import annotations

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def seq_delta(a: int, b: int) -> int:
    """Signed distance from sequence number ``b`` to ``a``, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_delta(a: int, b: int) -> int:
    """Signed distance from RTP timestamp ``b`` to ``a``, in [-2**31, 2**31 - 1]."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


class Extender:
    """Extends wrapping counters to unbounded integers, tolerating reordering."""

    __slots__ = ("_last", "_ext", "_bits")

    def __init__(self, bits: int) -> None:
        self._bits = bits
        self._last = -1
        self._ext = 0

    def peek(self, value: int) -> int:
        """Extended value of ``value`` relative to the last value fed, without feeding it."""
        if self._last < 0:
            return value
        half = 1 << (self._bits - 1)
        mask = (1 << self._bits) - 1
        return self._ext + ((value - self._last + half) & mask) - half

    def extend(self, value: int) -> int:
        """Extended value of ``value``; it becomes the reference for the next one."""
        self._ext = self.peek(value)
        self._last = value
        return self._ext
