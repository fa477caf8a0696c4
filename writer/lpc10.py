"""LPC-10 (US Federal Standard 1015, 2400 bit/s; RTP payload type 7 as FreeSWITCH and other
spandsp-based gateways send it) decoded by spandsp's implementation of the DoD reference
code, loaded through ctypes. Each 22.5 ms frame is 54 bits in 7 bytes and gives 180 samples
at 8 kHz; a packet carries whole frames (RFC 3551 section 4.5.9 leaves the framing open)."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import numpy as np
import numpy.typing as npt

FRAME_BYTES = 7
FRAME_SAMPLES = 180
# Frames decoded per packet at most: 90 ms packets carry 4; anything far beyond is broken.
MAX_FRAMES = 64

_lib: Any = None


def _spandsp() -> Any:
    """libspandsp, or None when it is not installed."""
    global _lib
    if _lib is None:
        for name in ("libspandsp.so.2", ctypes.util.find_library("spandsp")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            lib.lpc10_decode_init.restype = ctypes.c_void_p
            lib.lpc10_decode_init.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.lpc10_decode.restype = ctypes.c_int
            lib.lpc10_decode.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16),
                                         ctypes.c_char_p, ctypes.c_int]
            lib.lpc10_decode_free.argtypes = [ctypes.c_void_p]
            _lib = lib
            break
        else:
            _lib = False
    return _lib or None


def available() -> bool:
    return _spandsp() is not None


class Lpc10Decoder:
    """One stream's LPC-10 decoder (the synthesis filter keeps state between frames)."""

    def __init__(self) -> None:
        lib = _spandsp()
        if lib is None:
            raise OSError("libspandsp is not installed")
        self._lib = lib
        self._state = ctypes.c_void_p(lib.lpc10_decode_init(None, 0))
        self._out = (ctypes.c_int16 * (FRAME_SAMPLES * MAX_FRAMES))()

    def decode(self, payload: bytes) -> npt.NDArray[np.int16]:
        frames = min(len(payload) // FRAME_BYTES, MAX_FRAMES)
        if frames == 0:
            return np.zeros(0, np.int16)
        n = self._lib.lpc10_decode(self._state, self._out, payload[:frames * FRAME_BYTES],
                                   frames * FRAME_BYTES)
        out: npt.NDArray[np.int16] = np.ctypeslib.as_array(self._out)[:max(0, n)].copy()
        return out

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            self._lib.lpc10_decode_free(self._state)
