"""Sealed files: round trips at every chunk boundary, the writers' seeks, Range reads, and
every kind of tampering refused by name."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from writer import seal
from writer.seal import CHUNK, HEADER, SEALED_CHUNK, SealedReader, SealedWriter, SealError

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]


def _data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("size", SIZES)
def test_seal_bytes_round_trip(tmp_path: Path, size: int) -> None:
    key_id, key = seal.new_data_key()
    p = tmp_path / "f.enc"
    p.write_bytes(seal.seal_bytes(_data(size), key_id, key))
    assert seal.open_bytes(str(p), key) == _data(size)
    assert seal.key_id_of(str(p)) == key_id
    with SealedReader(str(p), key) as r:
        assert r.size == size


@pytest.mark.parametrize("size", SIZES)
def test_writer_streams_and_goes_back_into_the_first_chunk(tmp_path: Path, size: int) -> None:
    key_id, key = seal.new_data_key()
    data = bytearray(_data(size))
    p = str(tmp_path / "w.enc")
    w = SealedWriter(p, key_id, key)
    for k in range(0, size, 1000):
        w.write(data[k:k + 1000])
    if size >= 8:  # as a WAV writer fills in its lengths at the end
        w.seek(4)
        w.write(b"SIZE")
        data[4:8] = b"SIZE"
        w.seek(0, 2)
    w.close()
    assert seal.open_bytes(p, key) == bytes(data)
    if size >= 16:  # never the plain bytes on disk (shorter ones could occur by chance)
        assert bytes(data[-min(size, 64):]) not in Path(p).read_bytes()


def test_writer_refuses_to_go_back_into_sealed_chunks(tmp_path: Path) -> None:
    key_id, key = seal.new_data_key()
    w = SealedWriter(str(tmp_path / "x.enc"), key_id, key)
    w.write(bytes(3 * CHUNK))
    w.seek(CHUNK + 10)
    with pytest.raises(OSError, match="sealed"):
        w.write(b"x")
    w.seek(2 * CHUNK + 1)  # the chunk being filled stays open
    w.write(b"y")
    w.seek(1)
    assert w.read(2) == bytes(2)
    w.close()


def test_range_reads(tmp_path: Path) -> None:
    key_id, key = seal.new_data_key()
    data = _data(5 * CHUNK + 123)
    p = tmp_path / "r.enc"
    p.write_bytes(seal.seal_bytes(data, key_id, key))
    rng = random.Random(3)
    with SealedReader(str(p), key) as r:
        for _ in range(200):
            a = rng.randrange(len(data))
            b = rng.randrange(a, len(data) + 10)
            assert r.read_range(a, b) == data[a:b]


def test_tampering_is_refused_naming_the_file(tmp_path: Path) -> None:
    key_id, key = seal.new_data_key()
    data = _data(3 * CHUNK + 77)
    good = seal.seal_bytes(data, key_id, key)
    p = tmp_path / "t.enc"
    for at in (HEADER - 1, HEADER, HEADER + SEALED_CHUNK + 5, len(good) - 1):
        bad = bytearray(good)
        bad[at] ^= 1
        p.write_bytes(bad)
        with pytest.raises(SealError, match="t.enc"):
            seal.open_bytes(str(p), key)
    swapped = (good[:HEADER] + good[HEADER + SEALED_CHUNK:HEADER + 2 * SEALED_CHUNK]
               + good[HEADER:HEADER + SEALED_CHUNK] + good[HEADER + 2 * SEALED_CHUNK:])
    p.write_bytes(swapped)
    with pytest.raises(SealError, match="chunk 0"):
        seal.open_bytes(str(p), key)
    other = seal.seal_bytes(data, key_id, key)  # same key, another file: another salt
    p.write_bytes(good[:HEADER] + other[HEADER:])
    with pytest.raises(SealError):
        seal.open_bytes(str(p), key)
    p.write_bytes(good)
    with pytest.raises(SealError, match="chunk"):
        seal.open_bytes(str(p), seal.new_data_key()[1])


def test_every_truncation_is_refused(tmp_path: Path) -> None:
    key_id, key = seal.new_data_key()
    good = seal.seal_bytes(_data(CHUNK + 40), key_id, key)
    p = tmp_path / "c.enc"
    cuts = list(range(0, HEADER + 2)) + list(range(len(good) - 80, len(good)))
    cuts += [HEADER + SEALED_CHUNK + k for k in range(-2, 3)]
    for n in cuts:
        p.write_bytes(good[:n])
        with pytest.raises(SealError):
            seal.open_bytes(str(p), key)


def test_wrapped_keys_open_only_with_the_private_key(tmp_path: Path) -> None:
    seal.new_key_pair(str(tmp_path / "a.key"), str(tmp_path / "a.pub"))
    seal.new_key_pair(str(tmp_path / "b.key"), str(tmp_path / "b.pub"))
    assert os.stat(tmp_path / "a.key").st_mode & 0o777 == 0o600
    key_id, key = seal.new_data_key()
    entry = seal.wrap(key_id, key, seal.load_public(str(tmp_path / "a.pub")))
    assert seal.unwrap(entry, seal.load_private(str(tmp_path / "a.key"))) == key
    with pytest.raises(SealError, match="not for this one"):
        seal.unwrap(entry, seal.load_private(str(tmp_path / "b.key")))
    forged = {**entry, "key_id": seal.new_data_key()[0].hex()}  # the id is bound in
    with pytest.raises(SealError, match="does not open"):
        seal.unwrap(forged, seal.load_private(str(tmp_path / "a.key")))
    with pytest.raises(SealError, match="not an X25519 public key"):
        seal.load_public(str(tmp_path / "a.key"))
    with pytest.raises(SealError, match="not an X25519 private key"):
        seal.load_private(str(tmp_path / "a.pub"))
    with pytest.raises(FileExistsError):
        seal.new_key_pair(str(tmp_path / "a.key"), str(tmp_path / "a.pub"))
