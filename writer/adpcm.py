"""DVI4 (IMA ADPCM) as RFC 3551 section 4.5.1 packs it: a 4-byte state header per packet."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

STEPS = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60,
    66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371,
    408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878,
    2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845,
    8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086,
    29794, 32767,
)
INDEX_ADJUST = (-1, -1, -1, -1, 2, 4, 6, 8)


def dvi4_decode(payload: bytes) -> npt.NDArray[np.int16]:
    """Decode one DVI4 packet; the header carries the predictor and step index, so packets
    decode independently and a lost packet does not corrupt the next."""
    if len(payload) < 4:
        return np.zeros(0, np.int16)
    pred = int.from_bytes(payload[0:2], "big", signed=True)
    index = min(max(payload[2], 0), 88)
    out = np.empty((len(payload) - 4) * 2, dtype=np.int16)
    i = 0
    for byte in payload[4:]:
        for code in (byte >> 4, byte & 0x0F):  # first sample in the most significant nibble
            step = STEPS[index]
            diff = step >> 3
            if code & 4:
                diff += step
            if code & 2:
                diff += step >> 1
            if code & 1:
                diff += step >> 2
            pred = pred - diff if code & 8 else pred + diff
            pred = -32768 if pred < -32768 else 32767 if pred > 32767 else pred
            index = min(max(index + INDEX_ADJUST[code & 7], 0), 88)
            out[i] = pred
            i += 1
    return out


def dvi4_encode(
    pcm: npt.NDArray[np.int16], pred: int = 0, index: int = 0
) -> tuple[bytes, int, int]:
    """Encode one packet (for tests and the generator); returns (payload, pred, index)."""
    head = int(pred).to_bytes(2, "big", signed=True) + bytes([index, 0])
    codes = []
    for s in pcm.astype(int):
        step = STEPS[index]
        diff = s - pred
        code = 8 if diff < 0 else 0
        diff = abs(diff)
        delta = step >> 3
        if diff >= step:
            code |= 4
            diff -= step
            delta += step
        if diff >= step >> 1:
            code |= 2
            diff -= step >> 1
            delta += step >> 1
        if diff >= step >> 2:
            code |= 1
            delta += step >> 2
        pred = pred - delta if code & 8 else pred + delta
        pred = max(-32768, min(32767, pred))
        index = min(max(index + INDEX_ADJUST[code & 7], 0), 88)
        codes.append(code)
    if len(codes) % 2:
        codes.append(0)
    body = bytes((codes[k] << 4) | codes[k + 1] for k in range(0, len(codes), 2))
    return head + body, pred, index
