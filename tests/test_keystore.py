"""The key store: wrapped keys by id, apart from the files; erasure makes them unreadable."""

from __future__ import annotations

from pathlib import Path

import pytest

from writer import seal
from writer.keystore import KeyStore, Sealer, store_dir


def test_sealer_stores_its_wrapped_key_and_erasure_removes_it(tmp_path: Path) -> None:
    seal.new_key_pair(str(tmp_path / "e.key"), str(tmp_path / "e.pub"))
    store = KeyStore(store_dir(str(tmp_path / "out")))
    s = Sealer.new(store, seal.load_public(str(tmp_path / "e.pub")), durable=True)
    f = tmp_path / "x.json.enc"
    f.write_bytes(s.seal(b'{"a": 1}\n'))
    private = seal.load_private(str(tmp_path / "e.key"))
    kid = s.key_id.hex()
    assert s.describe()["key_id"] == kid
    assert (tmp_path / "out" / ".calltap" / "keys" / kid[:2] / f"{kid}.json").exists()
    assert seal.open_bytes(str(f), store.data_key(kid, private)) == b'{"a": 1}\n'
    assert store.erase(kid) and not store.erase(kid)
    with pytest.raises(seal.SealError, match="not in the key store"):
        store.data_key(kid, private)


def test_key_ids_are_checked_before_any_path_is_made(tmp_path: Path) -> None:
    store = KeyStore(str(tmp_path))
    for bad in ("../../etc/passwd", "ab", "Z" * 32):
        with pytest.raises(seal.SealError, match="not a key id"):
            store.path(bad)
