"""The dashboard's side of encryption at rest: it alone holds the private key, opens a
sealed call's files in memory and answers Range requests from the chunks asked for. No
plain byte of a sealed call is written to disk: transcoding and zips go through
memory-backed files (memfd)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from calltap import transcode as transcoding
from writer.keystore import KeyStore, store_dir
from writer.seal import CHUNK, SealedReader, SealError, key_id_of, load_private

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
# Plain bytes decrypted per piece of a streamed answer.
STREAM_PIECE = 4 * CHUNK


class Unsealer:
    """Opens sealed calls with the private key (``decrypt_key``); without it, a sealed
    call's files answer 409 saying so."""

    def __init__(self, out: str, private_key: str, key_store: str) -> None:
        self.private = load_private(private_key) if private_key else None
        self.store = KeyStore(store_dir(out, key_store))

    def data_key(self, path: str) -> bytes:
        """The key of a sealed file (its header names it: a call written again has another
        key than its first index line says)."""
        if self.private is None:
            raise HTTPException(409, "this recording is encrypted and the dashboard has no "
                                     "decrypt_key")
        try:
            return self.store.data_key(key_id_of(path).hex(), self.private)
        except SealError as exc:
            raise HTTPException(410, f"this recording cannot be opened: {exc}") from None

    def read(self, e: dict[str, Any], path: str) -> bytes:
        try:
            with SealedReader(path, self.data_key(path)) as r:
                return b"".join(r)
        except SealError as exc:
            raise HTTPException(500, str(exc)) from None

    def respond(self, request: Request, e: dict[str, Any], path: str, media_type: str,
                filename: str | None = None) -> Response:
        """The plain file, whole or the Range asked for (206), decrypted as it is sent."""
        key = self.data_key(path)
        try:
            reader = SealedReader(path, key)
        except SealError as exc:
            raise HTTPException(500, str(exc)) from None
        size = reader.size
        start, end, status = 0, size, 200
        headers = {"Accept-Ranges": "bytes"}
        if filename:
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        m = RANGE.match(request.headers.get("range", "").strip())
        if m and (m[1] or m[2]):
            if m[1]:
                start, end = int(m[1]), min(size, int(m[2]) + 1) if m[2] else size
            else:
                start, end = max(0, size - int(m[2])), size
            if start >= end:
                reader.close()
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)

        def pieces() -> Iterator[bytes]:
            try:
                for a in range(start, end, STREAM_PIECE):
                    yield reader.read_range(a, min(end, a + STREAM_PIECE))
            finally:
                reader.close()

        return StreamingResponse(pieces(), status_code=status, media_type=media_type,
                                 headers=headers)


def memfile(name: str, data: bytes = b"") -> int:
    """A file descriptor of a memory-backed file holding ``data`` (never on disk)."""
    fd = os.memfd_create(name)
    with os.fdopen(os.dup(fd), "wb") as f:
        f.write(data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def read_fd(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    with os.fdopen(os.dup(fd), "rb") as f:
        return f.read()


def transcode(sources: list[bytes], fmt: str) -> bytes:
    """The plain recordings transcoded through memory-backed files (never on disk)."""
    fds = [memfile(f"in{k}", data) for k, data in enumerate(sources)]
    out = memfile("out")
    try:
        transcoding.run([f"/dev/fd/{fd}" for fd in fds], fmt, f"/dev/fd/{out}",
                        pass_fds=(*fds, out))
        return read_fd(out)
    finally:
        for fd in (*fds, out):
            os.close(fd)
