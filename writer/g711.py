"""G.711 mu-law and A-law (ITU-T G.711) as numpy lookup tables."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]


def _ulaw_to_linear(u: int) -> int:
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def _alaw_to_linear(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


ULAW_DECODE: Int16Array = np.array([_ulaw_to_linear(i) for i in range(256)], dtype=np.int16)
ALAW_DECODE: Int16Array = np.array([_alaw_to_linear(i) for i in range(256)], dtype=np.int16)


@functools.cache
def pair_table(law: int) -> npt.NDArray[np.int32]:
    """Two G.711 bytes (``law`` 0: mu-law, 1: A-law) read as one little-endian 16-bit word
    to their two samples as one little-endian 32-bit word, first sample low: half the
    lookups of a byte table (256 KB, built the first time a writer needs it)."""
    table = (ULAW_DECODE, ALAW_DECODE)[law].astype("<u2").astype("<u4")
    word = np.arange(65536)
    pairs: npt.NDArray[np.int32] = (table[word & 0xFF] | table[word >> 8] << 16).astype(
        "<u4").view("<i4")
    return pairs


def decode_pairs(payloads: npt.NDArray[np.uint8], law: int) -> Int16Array:
    """G.711 payloads of an even number of bytes (rows of a C-contiguous array) decoded."""
    return pair_table(law).take(payloads.view("<u2")).view("<i2")

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _seg(val: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return 8


def _linear_to_ulaw(pcm: int) -> int:
    pcm >>= 2
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = _seg(pcm, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def _linear_to_alaw(pcm: int) -> int:
    pcm >>= 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask, pcm = 0x55, -pcm - 1
    seg = _seg(pcm, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1 if seg < 2 else pcm >> seg) & 0x0F
    return aval ^ mask


_ENCODE: dict[str, npt.NDArray[np.uint8]] = {}


def _encode_table(law: str) -> npt.NDArray[np.uint8]:
    table = _ENCODE.get(law)
    if table is None:
        fn = _linear_to_ulaw if law == "u" else _linear_to_alaw
        table = np.array([fn(v) for v in range(-32768, 32768)], dtype=np.uint8)
        _ENCODE[law] = table
    return table


def ulaw_decode(payload: bytes) -> Int16Array:
    return ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes) -> Int16Array:
    return ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def ulaw_encode(pcm: Int16Array) -> bytes:
    return bytes(_encode_table("u")[pcm.astype(np.int32) + 32768])


def alaw_encode(pcm: Int16Array) -> bytes:
    return bytes(_encode_table("a")[pcm.astype(np.int32) + 32768])
