"""Per-call spool: the media packets of a call on disk until the call is written.

Record layout: capture time (int64 ns), flow index (uint16, into the call's flow list),
payload length (uint16), then the UDP payload. Keeping packets on disk
rather than in memory keeps memory bounded by the number of concurrent calls, not by
how long they last.

A sealed spool (encryption at rest) holds the same records in frames, one per flush: frame
length (uint32), a random 12-byte nonce, the records sealed with ChaCha20-Poly1305 under
the call's own spool key, which lives in memory and in the job, never beside the file.
Random nonces, not a counter, because a restarted capture process takes up a call's spool
with the same key and no count of what was written before.
"""

from __future__ import annotations

import os
import resource
import secrets
import struct
from collections import OrderedDict
from collections.abc import Iterator

from capture.errors import CaptureError

REC = struct.Struct("<qHH")
FRAME = struct.Struct("<I")
NONCE = 12
KEY_BYTES = 32

# Bytes buffered per call before they are appended to its (open) file: about 0.1 s of
# G.711 both ways. Each live call holds up to this much; at 32 KiB the buffers were a
# quarter of a call's memory, and appends to an open file cost little (live_bench at
# 120,000 and 140,000 packets/s: no drop either way, 4 KiB or 2 KiB).
FLUSH_BYTES = 2 * 1024
# Bytes buffered across all calls; past it every buffer is written out.
MAX_BUFFERED = 64 * 1024 * 1024
# Spool files kept open between flushes (the least recently flushed is closed past it):
# opening and closing each call's file every second cost as much as its appends. Half the
# process's file limit at most, for Redis, sockets and writers' files.
MAX_OPEN_SPOOLS = 4096

SpoolRecord = tuple[int, int, bytes]
"""(capture time ns, flow index, UDP payload)."""


class SpoolSet:
    """Buffers and appends media records for every open call (keyed by its serial)."""

    def __init__(self, directory: str, sealed: bool = False, fresh: bool = False) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.fresh = fresh
        """The directory was made empty for this set (an import's): a call has a spool
        file only if this set wrote one, so closing a call need not look for it."""
        self._made: set[int] = set()
        """Open calls whose spool file this set created (one entry per open call)."""
        self._bufs: dict[int, bytearray] = {}
        self._buffered = 0
        self.sealed = sealed
        self._keys: dict[int, bytes] = {}
        """Each open call's spool key (sealed spools); one per concurrent call."""
        self._fds: OrderedDict[int, int] = OrderedDict()
        """Open spool files by serial, least recently flushed first."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_open = MAX_OPEN_SPOOLS if soft == resource.RLIM_INFINITY \
            else max(1, min(MAX_OPEN_SPOOLS, soft // 2))

    def key(self, serial: int) -> bytes | None:
        """The call's spool key (made on first use), or None when spools are plain."""
        if not self.sealed:
            return None
        k = self._keys.get(serial)
        if k is None:
            k = self._keys[serial] = secrets.token_bytes(KEY_BYTES)
        return k

    def adopt(self, serial: int, key: bytes) -> None:
        """A call taken up after a restart goes on with the key its spool was begun with."""
        self._keys[serial] = key

    def release(self, serial: int) -> bytes | None:
        """Forget the call's key (its job carries it on): the key it had, if any."""
        return self._keys.pop(serial, None)

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
        k = self.key(key)
        data = memoryview(seal_frame(k, buf) if k else buf)
        fd = self._fds.get(key)
        if fd is None:
            fd = os.open(self.path(key), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            self._fds[key] = fd
            self._made.add(key)
            if len(self._fds) > self.max_open:
                os.close(self._fds.popitem(last=False)[1])
        else:
            self._fds.move_to_end(key)
        while data:
            data = data[os.write(fd, data):]
        self._buffered -= len(buf)

    def _close(self, key: int) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def close_all(self) -> None:
        """Write what is buffered and close every spool file (the capture stops)."""
        self.flush_all()
        while self._fds:
            os.close(self._fds.popitem()[1])

    def flush_all(self) -> None:
        """Write every buffered record (live capture does it every quarter second, so a
        crash loses at most that much)."""
        for k in list(self._bufs):
            self._flush(k)

    def close_call(self, key: int) -> str | None:
        """Flush the call's records; its spool path, or None when it has no media."""
        self._flush(key)
        self._close(key)
        path = self.path(key)
        if key in self._made:
            self._made.discard(key)
            return path
        # a call taken up after a restart may have a spool from the process before
        return None if self.fresh or not os.path.exists(path) else path


def seal_frame(key: bytes, plain: bytes | bytearray) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    nonce = secrets.token_bytes(NONCE)
    sealed = ChaCha20Poly1305(key).encrypt(nonce, bytes(plain), None)
    return FRAME.pack(len(sealed)) + nonce + sealed


def open_frames(data: bytes | memoryview, key: bytes, path: str) -> tuple[bytes, int]:
    """A sealed spool's plain records and the bytes of it read (a frame not all on disk
    yet, or torn by a crash, is left for later or out)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(key)
    out = []
    pos, size = 0, len(data)
    while pos + FRAME.size + NONCE <= size:
        (n,) = FRAME.unpack_from(data, pos)
        start = pos + FRAME.size + NONCE
        if start + n > size:
            break
        try:
            out.append(aead.decrypt(bytes(data[pos + FRAME.size:start]),
                                    bytes(data[start:start + n]), None))
        except InvalidTag:
            raise CaptureError(f"{path}: spool frame at byte {pos} does not open "
                               "(altered, or another key)") from None
        pos = start + n
    return b"".join(out), pos


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
