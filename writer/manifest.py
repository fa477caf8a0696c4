"""A call's signed manifest: the SHA-256 and size of every file of the call, the call's
identifiers, the recorder's identity and version, as a compact JWS signed with Ed25519
(RFC 8037; alg "Ed25519" of RFC 9864). Anyone with the public key can check that a
recording is complete and unaltered."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from typing import Any

from writer.errors import WriterError

MANIFEST_VERSION = 1
ALG = "Ed25519"
# Bytes read at a time when hashing a file (a recording of hours never sits in memory).
HASH_CHUNK = 1 << 20


def file_digest(path: str) -> tuple[str, int]:
    """(SHA-256 hex, size) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(HASH_CHUNK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def plain_digest(path: str, data_key: bytes) -> tuple[str, int]:
    """(SHA-256 hex, size) of a sealed file's plain bytes."""
    from writer.seal import SealedReader

    h = hashlib.sha256()
    with SealedReader(path, data_key) as r:
        for block in r:
            h.update(block)
        return h.hexdigest(), r.size


def build(out_dir: str, files: list[str], call: dict[str, Any], recorder: dict[str, str],
          created: str, data_key: bytes | None = None) -> dict[str, Any]:
    """The manifest of the call whose files (paths relative to ``out_dir``) are given; a
    sealed file's entry (with ``data_key``) also has its plain bytes' digest and size, which
    the files `calltap decrypt` restores are checked against."""
    from writer.seal import SUFFIX

    entries = []
    for rel in files:
        path = os.path.join(out_dir, rel)
        digest, size = file_digest(path)
        entry: dict[str, Any] = {"name": os.path.basename(rel), "sha256": digest,
                                 "size": size}
        if data_key is not None and rel.endswith(SUFFIX):
            entry["plain_sha256"], entry["plain_size"] = plain_digest(path, data_key)
        entries.append(entry)
    return {"v": MANIFEST_VERSION, "call": call, "recorder": recorder, "created": created,
            "files": entries}


@lru_cache(maxsize=4)
def load_key(path: str, private: bool) -> Any:
    """An Ed25519 key from a PEM file (cached: each writer process reads it once)."""
    from joserfc.jwk import OKPKey

    try:
        with open(path, "rb") as f:
            key = OKPKey.import_key(f.read())
    except (OSError, ValueError) as exc:
        raise WriterError(f"{path}: not an Ed25519 key: {exc}") from None
    if private and not key.is_private:
        raise WriterError(f"{path}: a public key; signing needs the private one")
    return key


def sign(manifest: dict[str, Any], key_path: str) -> bytes:
    from joserfc import jws

    payload = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    token: str = jws.serialize_compact({"alg": ALG, "typ": "calltap-manifest+jws"}, payload,
                                       load_key(key_path, True), algorithms=[ALG])
    return token.encode()


def verify(token: bytes, public_key_path: str) -> dict[str, Any]:
    """The manifest a JWS carries, if its signature holds; WriterError otherwise."""
    from joserfc import jws
    from joserfc.errors import JoseError

    try:
        obj = jws.deserialize_compact(token.strip(), load_key(public_key_path, False),
                                      algorithms=[ALG])
        data: dict[str, Any] = json.loads(obj.payload)
    except (JoseError, ValueError) as exc:
        raise WriterError(f"signature does not verify: {exc or type(exc).__name__}"
                          ) from None
    return data


def new_key_pair(private_path: str, public_path: str) -> None:
    """Write a new Ed25519 key pair as PEM (the private file readable by its owner only)."""
    from joserfc.jwk import OKPKey

    key = OKPKey.generate_key("Ed25519", private=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.as_pem(private=True))
    with open(public_path, "wb") as f:
        f.write(key.as_pem(private=False))
