"""Encryption at rest: a recording's files sealed with its own data key, the data key
wrapped for the site's X25519 public key.

A sealed file is a 40-byte header (magic, the data key's id, a random salt) and the plain
bytes in 64 KiB chunks, each sealed with ChaCha20-Poly1305 (RFC 8439) under a key derived
from the data key and the salt (HKDF, RFC 5869). A chunk's nonce is its index and a flag
marking the last chunk (the STREAM construction of Hoang et al., as age uses it), so a
chunk moved, dropped, swapped between files or cut off at the end fails to open. Any
chunk opens on its own: a player's Range request decrypts only what it asks for.

Writers stream: ``SealedWriter`` keeps only the first chunk (where WAV, FLAC and MP3
writers go back to fill in lengths) and the one being filled in memory, whatever the
call's length. A data key is wrapped with an ephemeral X25519 agreement (the way HPKE's
base mode and age do), so whoever holds only the public key can seal but never open."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from writer.errors import WriterError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

# cryptography is loaded where a key is used or a file sealed, not with this module: every
# writer and import loads it (for SUFFIX and the types), few seal anything, and loading it
# took 30-50 ms of each process start.

MAGIC = b"CTSEAL01"
KEY_ID_BYTES = 16
SALT_BYTES = 16
HEADER = len(MAGIC) + KEY_ID_BYTES + SALT_BYTES
# Plain bytes per chunk: big enough that the 16-byte tags cost 0.02 %, small enough that a
# Range request decrypts little beyond what it asked for.
CHUNK = 64 * 1024
TAG = 16
SEALED_CHUNK = CHUNK + TAG
SUFFIX = ".enc"
WRAP_ALG = "X25519-HKDF-SHA256-ChaCha20Poly1305"
WRAP_INFO = b"calltap wrap v1"
FILE_INFO = b"calltap seal v1 file"


class SealError(WriterError):
    """A sealed file or wrapped key that does not open (wrong key, altered, cut short)."""


def new_data_key() -> tuple[bytes, bytes]:
    """(key id, data key) for one recording."""
    return secrets.token_bytes(KEY_ID_BYTES), secrets.token_bytes(32)


def _derive(key: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# -- keys ------------------------------------------------------------------------------

def fingerprint(public: X25519PublicKey) -> str:
    """A public key's short name (SHA-256 of its raw bytes, 16 bytes hex)."""
    return hashlib.sha256(public.public_bytes_raw()).hexdigest()[:32]


@lru_cache(maxsize=4)
def load_public(path: str) -> X25519PublicKey:
    """An X25519 public key from a PEM file (cached: a writer reads it once, not per call)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_public_key(f.read())
    except (OSError, ValueError) as exc:
        raise SealError(f"{path}: not an X25519 public key: {exc}") from None
    if not isinstance(key, X25519PublicKey):
        raise SealError(f"{path}: not an X25519 public key ({type(key).__name__})")
    return key


def load_private(path: str) -> X25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SealError(f"{path}: not an X25519 private key: {exc}") from None
    if not isinstance(key, X25519PrivateKey):
        raise SealError(f"{path}: not an X25519 private key ({type(key).__name__})")
    return key


def new_key_pair(private_path: str, public_path: str) -> None:
    """Write a new X25519 key pair as PEM (the private file readable by its owner only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(public_path, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def wrap(key_id: bytes, data_key: bytes, recipient: X25519PublicKey) -> dict[str, Any]:
    """The data key sealed for ``recipient``: only its private key opens it."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    eph = X25519PrivateKey.generate()
    epk = eph.public_key().public_bytes_raw()
    rpk = recipient.public_bytes_raw()
    kek = _derive(eph.exchange(recipient), epk + rpk, WRAP_INFO)
    sealed = ChaCha20Poly1305(kek).encrypt(bytes(12), data_key, key_id)
    return {"v": 1, "alg": WRAP_ALG, "key_id": key_id.hex(), "recipient": fingerprint(recipient),
            "epk": base64.b64encode(epk).decode(), "wrapped": base64.b64encode(sealed).decode()}


def unwrap(entry: dict[str, Any], private: X25519PrivateKey) -> bytes:
    """The data key of a wrapped-key entry; SealError if this key cannot open it."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    try:
        if entry.get("alg") != WRAP_ALG:
            raise SealError(f"key {entry.get('key_id')}: unknown wrapping {entry.get('alg')!r}")
        key_id = bytes.fromhex(entry["key_id"])
        epk = base64.b64decode(entry["epk"], validate=True)
        sealed = base64.b64decode(entry["wrapped"], validate=True)
        mine = private.public_key()
        if entry.get("recipient") != fingerprint(mine):
            raise SealError(f"key {entry['key_id']}: wrapped for public key "
                            f"{entry.get('recipient')}, not for this one ({fingerprint(mine)})")
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
        kek = _derive(shared, epk + mine.public_bytes_raw(), WRAP_INFO)
        return ChaCha20Poly1305(kek).decrypt(bytes(12), sealed, key_id)
    except (KeyError, ValueError, TypeError, InvalidTag) as exc:
        raise SealError(f"key {entry.get('key_id')}: does not open ({type(exc).__name__})"
                        ) from None


# -- sealed files ----------------------------------------------------------------------

def _header(key_id: bytes, salt: bytes) -> bytes:
    return MAGIC + key_id + salt


def seal_bytes(plain: bytes, key_id: bytes, data_key: bytes) -> bytes:
    """A small file sealed whole (metadata, summary, view)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    salt = secrets.token_bytes(SALT_BYTES)
    head = _header(key_id, salt)
    aead = ChaCha20Poly1305(_derive(data_key, salt, FILE_INFO))
    n = max(1, -(-len(plain) // CHUNK))
    out = [head]
    for i in range(n):
        out.append(aead.encrypt(_nonce(i, i == n - 1), plain[i * CHUNK:(i + 1) * CHUNK], head))
    return b"".join(out)


def key_id_of(path: str) -> bytes:
    """The data key id a sealed file names in its header."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER)
    except OSError as exc:
        raise SealError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(head) < HEADER or not head.startswith(MAGIC):
        raise SealError(f"{path}: not a sealed file")
    return head[len(MAGIC):len(MAGIC) + KEY_ID_BYTES]


class SealedWriter:
    """A file opened for writing whose bytes land sealed. It takes the writes and seeks of
    a WAV, libsndfile or FFmpeg writer: forward, plus going back into the first chunk,
    which is sealed last; going back further is refused."""

    def __init__(self, path: str, key_id: bytes, data_key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        salt = secrets.token_bytes(SALT_BYTES)
        self._head_bytes = _header(key_id, salt)
        self._aead = ChaCha20Poly1305(_derive(data_key, salt, FILE_INFO))
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._f.write(self._head_bytes)
        self._first = bytearray()  # chunk 0, sealed at close
        self._cur = bytearray()    # chunk self._index (>= 1) being filled
        self._index = 0            # the chunk being filled; 0: none past the first yet
        self._pos = 0
        self._size = 0
        self.closed = False

    # the file-object methods soundfile's virtual I/O and PyAV's I/O call
    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the file")
        self._pos = base + offset
        return self._pos

    def flush(self) -> None:
        pass

    def _seal(self, index: int, plain: bytes | bytearray, last: bool) -> None:
        self._f.seek(HEADER + index * SEALED_CHUNK)
        self._f.write(self._aead.encrypt(_nonce(index, last), bytes(plain), self._head_bytes))

    def _chunk(self, index: int) -> bytearray:
        """The buffer of chunk ``index``, sealing the chunks before it that are done."""
        if index == 0:
            return self._first
        if index == self._index:
            return self._cur
        if index < self._index:
            raise OSError("cannot go back into sealed data (only the first chunk stays open)")
        if self._index:  # the chunk filled so far is done: it is not the last
            self._seal(self._index, self._cur.ljust(CHUNK, b"\0"), False)
        for skipped in range(self._index + 1, index):  # a hole: zeros, as a file has
            self._seal(skipped, bytes(CHUNK), False)
        self._index, self._cur = index, bytearray()
        return self._cur

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            index, at = divmod(self._pos, CHUNK)
            part = view[done:done + CHUNK - at]
            buf = self._chunk(index)
            if len(buf) < at:
                buf.extend(bytes(at - len(buf)))
            buf[at:at + len(part)] = part
            done += len(part)
            self._pos += len(part)
            self._size = max(self._size, self._pos)
        return done

    def read(self, n: int = -1) -> bytes:
        """Reads back what is still open (the first chunk, the one being filled)."""
        end = self._size if n < 0 else min(self._size, self._pos + n)
        out = bytearray()
        while self._pos < end:
            index, at = divmod(self._pos, CHUNK)
            if index and index != self._index:
                raise OSError("cannot read back sealed data")
            buf = self._first if index == 0 else self._cur
            part = bytes(buf[at:min(CHUNK, at + end - self._pos)]).ljust(
                min(CHUNK - at, end - self._pos), b"\0")
            out += part
            self._pos += len(part)
        return bytes(out)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self, durable: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            last = (self._size - 1) // CHUNK if self._size else 0
            self._chunk(last)  # seals everything before the last chunk
            if last:
                self._seal(last, self._cur[:self._size - last * CHUNK], True)
                self._seal(0, self._first.ljust(CHUNK, b"\0"), False)
            else:
                self._seal(0, self._first[:self._size], True)
            self._f.truncate(HEADER + last * SEALED_CHUNK + (self._size - last * CHUNK) + TAG)
            if durable:
                self._f.flush()
                os.fsync(self._f.fileno())
        finally:
            self._f.close()
            self._first = self._cur = bytearray()

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SealedReader:
    """A sealed file opened with its data key: its plain size, any byte range, or all of it
    in order (a chunk that does not open raises SealError naming the file and chunk)."""

    def __init__(self, path: str, data_key: bytes) -> None:
        self.path = path
        try:
            self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
            total = os.fstat(self._f.fileno()).st_size
        except OSError as exc:
            raise SealError(f"{path}: cannot read: {exc.strerror or exc}") from None
        head = self._f.read(HEADER)
        if len(head) < HEADER or not head.startswith(MAGIC):
            self._f.close()
            raise SealError(f"{path}: not a sealed file")
        self._head = head
        self.key_id = head[len(MAGIC):len(MAGIC) + KEY_ID_BYTES]
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        self._aead = ChaCha20Poly1305(_derive(data_key, head[-SALT_BYTES:], FILE_INFO))
        body = total - HEADER
        self.chunks = -(-body // SEALED_CHUNK)
        if body < TAG or body - (self.chunks - 1) * SEALED_CHUNK < TAG:
            self._f.close()
            raise SealError(f"{path}: cut short ({total} bytes)")
        self.size = body - self.chunks * TAG

    def chunk(self, index: int) -> bytes:
        from cryptography.exceptions import InvalidTag

        self._f.seek(HEADER + index * SEALED_CHUNK)
        sealed = self._f.read(SEALED_CHUNK)
        try:
            return self._aead.decrypt(_nonce(index, index == self.chunks - 1), sealed,
                                      self._head)
        except InvalidTag:
            raise SealError(f"{self.path}: chunk {index} does not open (altered, moved, "
                            "cut short or another key)") from None

    def read_range(self, start: int, end: int) -> bytes:
        """Plain bytes [start, end)."""
        end = min(end, self.size)
        if start >= end:
            return b""
        first, last = start // CHUNK, (end - 1) // CHUNK
        data = b"".join(self.chunk(i) for i in range(first, last + 1))
        return data[start - first * CHUNK:end - first * CHUNK]

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.chunks):
            yield self.chunk(i)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_bytes(path: str, data_key: bytes) -> bytes:
    """A small sealed file's plain bytes."""
    with SealedReader(path, data_key) as r:
        return b"".join(r)
