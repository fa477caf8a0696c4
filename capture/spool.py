"""Per-call spool: the media packets of a call on disk until the call is written.

Record layout: capture time (int64 ns), flow index (uint16, into the call's flow list),
payload length (uint16), then the UDP payload. Keeping packets on disk
rather than in memory keeps memory bounded by the number of concurrent calls, not by
how long they last.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

from capture.errors import CaptureError

REC = struct.Struct("<qHH")

# Bytes buffered per call before they are appended to its file: a few seconds of G.711.
FLUSH_BYTES = 32 * 1024
# Bytes buffered across all calls; past it every buffer is written out.
MAX_BUFFERED = 64 * 1024 * 1024

SpoolRecord = tuple[int, int, bytes]
"""(capture time ns, flow index, UDP payload)."""


class SpoolSet:
    """Buffers and appends media records for every open call (keyed by its serial)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._bufs: dict[int, bytearray] = {}
        self._buffered = 0

    def path(self, key: int) -> str:
        return os.path.join(self.directory, f"{key}.spool")

    def add(self, key: int, ts_ns: int, flow: int, payload: bytes) -> None:
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = bytearray()
        buf += REC.pack(ts_ns, flow, len(payload))
        buf += payload
        self._buffered += REC.size + len(payload)
        if len(buf) >= FLUSH_BYTES:
            self._flush(key)
        elif self._buffered >= MAX_BUFFERED:
            for k in list(self._bufs):
                self._flush(k)

    def _flush(self, key: int) -> None:
        buf = self._bufs.pop(key, None)
        if not buf:
            return
        with open(self.path(key), "ab") as f:
            f.write(buf)
        self._buffered -= len(buf)

    def flush_all(self) -> None:
        """Write every buffered record (live capture does it each second, so a crash loses
        at most that much)."""
        for k in list(self._bufs):
            self._flush(k)

    def close_call(self, key: int) -> str | None:
        """Flush the call's records; its spool path, or None when it has no media."""
        self._flush(key)
        path = self.path(key)
        return path if os.path.exists(path) else None


def read_spool(path: str) -> Iterator[SpoolRecord]:
    """Iterate a spool file's records; a torn last record (crash mid-write) is ignored."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
            off = 0
            while True:
                avail = len(data) - off
                n = REC.unpack_from(data, off)[2] if avail >= REC.size else 0
                if avail < REC.size + n:
                    more = f.read(1 << 20)
                    if not more:
                        return
                    data = data[off:] + more
                    off = 0
                    continue
                ts, flow, n = REC.unpack_from(data, off)
                start = off + REC.size
                yield ts, flow, data[start : start + n]
                off = start + n
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read spool: {exc.strerror or exc}") from None
