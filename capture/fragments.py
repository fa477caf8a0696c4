"""IPv4 and IPv6 fragment reassembly (RFC 791, RFC 8200 section 4.5), sans-IO and bounded.

Fragments may arrive in any order and overlap (the first copy of a byte wins, as mirrors
duplicate rather than rewrite). A datagram whose fragments do not all arrive within the
timeout is dropped and counted.
"""

from __future__ import annotations

from collections import Counter

NS = 1_000_000_000
# Datagrams being reassembled at once: a SIP mirror has a handful in flight; a fragment flood
# must not grow this without limit.
MAX_DATAGRAMS = 1024
# Bytes held across all partial datagrams.
MAX_BYTES = 16 * 1024 * 1024
# Largest datagram accepted: the IPv4 maximum; IPv6 jumbograms are not fragmented.
MAX_DATAGRAM = 65_535
# RFC 791 suggests up to 15 s; RFC 8200 60 s. Mirrors deliver fragments within milliseconds.
TIMEOUT_NS = 30 * NS

Key = tuple[bytes, bytes, int, int]


class _Partial:
    __slots__ = ("first_ns", "pieces", "total", "size")

    def __init__(self, ts_ns: int) -> None:
        self.first_ns = ts_ns
        self.pieces: list[tuple[int, bytes]] = []
        self.total = -1
        self.size = 0


class Reassembler:
    """Collects fragments; ``feed`` returns the whole transport payload once complete."""

    def __init__(self, max_datagrams: int = MAX_DATAGRAMS, max_bytes: int = MAX_BYTES,
                 timeout_ns: int = TIMEOUT_NS) -> None:
        self._parts: dict[Key, _Partial] = {}
        self._bytes = 0
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout_ns = timeout_ns
        self.drops: Counter[str] = Counter()
        """Fragments or datagrams given up, by reason."""

    def __len__(self) -> int:
        return len(self._parts)

    def feed(self, ts_ns: int, key: Key, offset: int, more: bool, data: bytes) -> bytes | None:
        part = self._parts.get(key)
        if part is None:
            if len(self._parts) >= self.max_datagrams:
                self.drops["fragment_table_full"] += 1
                return None
            part = self._parts[key] = _Partial(ts_ns)
        if offset + len(data) > MAX_DATAGRAM or self._bytes + len(data) > self.max_bytes:
            self.drops["fragment_too_large"] += 1
            self._discard(key)
            return None
        part.pieces.append((offset, data))
        part.size += len(data)
        self._bytes += len(data)
        if not more:
            part.total = offset + len(data)
        if part.total < 0:
            return None
        whole = self._assemble(part)
        if whole is not None:
            self._discard(key)
        return whole

    @staticmethod
    def _assemble(part: _Partial) -> bytes | None:
        buf = bytearray(part.total)
        have = 0  # bytes 0..have are filled
        for off, data in sorted(part.pieces, key=lambda p: p[0]):
            if off > have:
                return None  # a hole: wait for more
            end = min(off + len(data), part.total)
            if end > have:
                buf[have:end] = data[have - off : end - off]
                have = end
        return bytes(buf) if have >= part.total else None

    def _discard(self, key: Key) -> None:
        part = self._parts.pop(key, None)
        if part is not None:
            self._bytes -= part.size

    def expire(self, now_ns: int) -> None:
        """Drop datagrams whose fragments have not all arrived within the timeout."""
        for key, part in list(self._parts.items()):
            if now_ns - part.first_ns >= self.timeout_ns:
                self.drops["fragment_timeout"] += 1
                self._discard(key)
