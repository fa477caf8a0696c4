from __future__ import annotations

import warnings

import numpy as np

from writer.g711 import (
    ALAW_DECODE,
    ULAW_DECODE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # independent reference implementation (CPython's C code)


def test_decode_tables_match_reference() -> None:
    every = bytes(range(256))
    ref_u = np.frombuffer(audioop.ulaw2lin(every, 2), dtype=np.int16)
    ref_a = np.frombuffer(audioop.alaw2lin(every, 2), dtype=np.int16)
    assert np.array_equal(ULAW_DECODE, ref_u)
    assert np.array_equal(ALAW_DECODE, ref_a)
    assert np.array_equal(ulaw_decode(every), ref_u)
    assert np.array_equal(alaw_decode(every), ref_a)


def test_encode_matches_reference() -> None:
    pcm = np.arange(-32768, 32768, 7, dtype=np.int16)
    assert ulaw_encode(pcm) == audioop.lin2ulaw(pcm.tobytes(), 2)
    assert alaw_encode(pcm) == audioop.lin2alaw(pcm.tobytes(), 2)


def test_round_trip_of_decoded_values_is_exact() -> None:
    assert np.array_equal(ulaw_decode(ulaw_encode(ULAW_DECODE)), ULAW_DECODE)
    assert np.array_equal(alaw_decode(alaw_encode(ALAW_DECODE)), ALAW_DECODE)


def test_pair_decode_is_the_byte_tables() -> None:
    from writer.g711 import decode_pairs

    rng = np.random.default_rng(11)
    every_pair = np.arange(65536, dtype="<u2").view(np.uint8).reshape(1, -1)
    for payloads in (every_pair, rng.integers(0, 256, (40, 160), dtype=np.uint8),
                     rng.integers(0, 256, (3, 2), dtype=np.uint8)):
        for law, table in ((0, ULAW_DECODE), (1, ALAW_DECODE)):
            got = decode_pairs(payloads, law)
            assert got.shape == payloads.shape
            assert (got == table.take(payloads)).all()
