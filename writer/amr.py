"""AMR and AMR-WB RTP payloads (RFC 4867) to storage-format frames a decoder reads.

Both payload formats: octet-aligned (section 4.4) and bandwidth-efficient (section 4.3).
Interleaving and frame CRCs are not supported (the SDP says so; such streams are rare).
"""

from __future__ import annotations

# Speech bits per frame type; the last entry is the SID (comfort noise) frame.
NB_BITS = (95, 103, 118, 134, 148, 159, 204, 244, 39)
WB_BITS = (132, 177, 253, 285, 317, 365, 397, 461, 477, 40)
NO_DATA = 15
# Frames per packet; RFC 4867 allows more, real senders bundle a handful.
MAX_FRAMES = 32


class AmrError(ValueError):
    """A payload that does not follow RFC 4867."""


def _bits(ft: int, wideband: bool) -> int:
    table = WB_BITS if wideband else NB_BITS
    if ft == NO_DATA or ft in (14,):
        return 0
    if ft >= len(table):
        raise AmrError(f"frame type {ft} is reserved")
    return table[ft]


def storage_frames(payload: bytes, wideband: bool, octet_aligned: bool) -> list[bytes]:
    """Each frame as header byte (FT << 3 | Q << 2) plus its speech bits, octet padded."""
    total = len(payload) * 8
    value = int.from_bytes(payload, "big")
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        if pos + n > total:
            raise AmrError("payload ends inside a field")
        pos += n
        return (value >> (total - pos)) & ((1 << n) - 1)

    take(8 if octet_aligned else 4)  # CMR (+ reserved bits when octet aligned)
    toc: list[tuple[int, int]] = []
    while True:
        more = take(1)
        ft = take(4)
        q = take(1)
        if octet_aligned:
            take(2)
        toc.append((ft, q))
        if not more:
            break
        if len(toc) >= MAX_FRAMES:
            raise AmrError(f"more than {MAX_FRAMES} frames in one packet")
    frames = []
    for ft, q in toc:
        n = _bits(ft, wideband)
        data = take(n) if n else 0
        if octet_aligned and n % 8:
            take(8 - n % 8)
        nbytes = (n + 7) // 8
        body = (data << (nbytes * 8 - n)).to_bytes(nbytes, "big") if n else b""
        frames.append(bytes([(ft << 3) | (q << 2)]) + body)
    return frames


def rtp_payload(frames: list[tuple[int, bytes]], wideband: bool, octet_aligned: bool) -> bytes:
    """Pack (frame type, storage speech bytes) frames as an RTP payload (for tests)."""
    fields: list[tuple[int, int]] = [(15, 8 if octet_aligned else 4)]  # CMR: no request
    for i, (ft, _data) in enumerate(frames):
        more = 1 if i < len(frames) - 1 else 0
        fields.append(((more << 5) | (ft << 1) | 1, 6))
        if octet_aligned:
            fields.append((0, 2))
    if octet_aligned:
        fields[0] = (0xF0, 8)
    for ft, data in frames:
        n = _bits(ft, wideband)
        val = int.from_bytes(data, "big") >> (len(data) * 8 - n) if n else 0
        fields.append((val, n))
        if octet_aligned and n % 8:
            fields.append((0, 8 - n % 8))
    acc = nbits = 0
    for val, n in fields:
        acc = (acc << n) | val
        nbits += n
    pad = (-nbits) % 8
    return (acc << pad).to_bytes((nbits + pad) // 8, "big")
