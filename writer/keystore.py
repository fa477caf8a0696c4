"""The key store: each recording's data key, wrapped for the site's public key, kept apart
from the recordings (its own directory, ideally its own volume and backups). Deleting a
recording's entry here makes every copy of its files unreadable, backups included."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from writer import seal
from writer.output import sync_path, write_atomic
from writer.seal import SealedWriter

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

# Where the key store is when the configuration names none (inside the output directory:
# erasure works, but a backup of the whole directory carries the wrapped keys with it).
DEFAULT_DIR = os.path.join(".calltap", "keys")


def store_dir(out: str, configured: str = "") -> str:
    return configured or os.path.join(out, DEFAULT_DIR)


class KeyStore:
    """Wrapped data keys by key id, one small file each (``<dir>/<id[:2]>/<id>.json``)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def path(self, key_id: str) -> str:
        if len(key_id) != 2 * seal.KEY_ID_BYTES or not all(c in "0123456789abcdef"
                                                            for c in key_id):
            raise seal.SealError(f"{key_id[:40]!r} is not a key id")
        return os.path.join(self.directory, key_id[:2], key_id + ".json")

    def put(self, entry: dict[str, Any], durable: bool) -> None:
        path = self.path(entry["key_id"])
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomic(path, (json.dumps(entry, sort_keys=True) + "\n").encode(), durable)
        if durable:
            sync_path(os.path.dirname(path))

    def get(self, key_id: str) -> dict[str, Any] | None:
        try:
            with open(self.path(key_id), encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
                return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise seal.SealError(f"key {key_id}: unreadable entry: {exc}") from None

    def erase(self, key_id: str) -> bool:
        """Delete a recording's wrapped key (durably); False if it was not here."""
        path = self.path(key_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        sync_path(os.path.dirname(path))
        return True

    def data_key(self, key_id: str, private: X25519PrivateKey) -> bytes:
        entry = self.get(key_id)
        if entry is None:
            raise seal.SealError(f"key {key_id}: not in the key store {self.directory} "
                                 "(erased, or another store)")
        return seal.unwrap(entry, private)


@dataclass(frozen=True)
class Sealer:
    """One recording's data key, as a writer holds it while it writes the call's files."""

    key_id: bytes
    data_key: bytes
    recipient: str

    @classmethod
    def new(cls, store: KeyStore, public: X25519PublicKey, durable: bool) -> Sealer:
        """A fresh data key, wrapped and stored before any file is sealed with it."""
        key_id, data_key = seal.new_data_key()
        store.put(seal.wrap(key_id, data_key, public), durable)
        return cls(key_id, data_key, seal.fingerprint(public))

    def seal(self, plain: bytes) -> bytes:
        return seal.seal_bytes(plain, self.key_id, self.data_key)

    def writer(self, path: str) -> SealedWriter:
        return seal.SealedWriter(path, self.key_id, self.data_key)

    def describe(self) -> dict[str, str]:
        return {"key_id": self.key_id.hex(), "recipient": self.recipient,
                "suffix": seal.SUFFIX}
