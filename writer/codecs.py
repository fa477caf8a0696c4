"""Payload type to codec resolution and the decoders calltap has in-process."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from writer.g711 import alaw_decode, ulaw_decode

Int16Array = npt.NDArray[np.int16]

# RFC 3551 section 6 static payload types: (encoding, clock rate, channels).
STATIC_PT: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    15: ("G728", 8000, 1),
    18: ("G729", 8000, 1),
}

# Payloads that carry no audio of their own: comfort noise (RFC 3389) and events (RFC 4733).
CONTROL = frozenset(("CN", "TELEPHONE-EVENT", "TONE"))


class Decoder:
    """A codec calltap can decode: output sample rate and a payload -> samples function."""

    __slots__ = ("name", "clock", "rate", "decode")

    def __init__(self, name: str, clock: int, rate: int, decode: Callable[[bytes], Int16Array]):
        self.name = name
        """Canonical codec name, e.g. PCMU/8000."""
        self.clock = clock
        """RTP clock rate."""
        self.rate = rate
        """Sample rate of the decoded audio."""
        self.decode = decode
        """Payload bytes to mono int16 samples."""


_DECODERS: dict[str, Callable[[int], Decoder]] = {
    "PCMU": lambda clock: Decoder("PCMU/8000", clock, 8000, ulaw_decode),
    "PCMA": lambda clock: Decoder("PCMA/8000", clock, 8000, alaw_decode),
}


def resolve(pt: int, rtpmap: dict[int, tuple[str, int, int]]) -> tuple[str, int, int]:
    """(encoding upper-cased, clock rate, channels) of a payload type; ('', 0, 0) if unknown."""
    entry = rtpmap.get(pt)
    if entry is None and pt < 96:
        entry = STATIC_PT.get(pt)
    if entry is None:
        return "", 0, 0
    return entry[0].upper(), entry[1], entry[2]


def decoder_for(name: str, clock: int) -> Decoder | None:
    """The decoder for an encoding, or None when calltap has none for it."""
    make = _DECODERS.get(name)
    return make(clock) if make is not None else None
