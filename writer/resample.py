"""Streaming rational resampler: windowed-sinc polyphase FIR with state between chunks.

Used when the directions of a call (or a codec switch) have different sample rates: the
output runs at the highest, and lower-rate audio is brought up with a proper low-pass
filter rather than repeated or interpolated samples.
"""

from __future__ import annotations

from math import gcd

import numpy as np
import numpy.typing as npt

# Filter half-length in input samples: 16 gives > 60 dB stopband with the Kaiser window.
TAPS_PER_SIDE = 16
KAISER_BETA = 8.0


class Resampler:
    """Converts a continuous stream from ``src`` Hz to ``dst`` Hz, chunk by chunk."""

    def __init__(self, src: int, dst: int) -> None:
        g = gcd(src, dst)
        self.up, self.down = dst // g, src // g
        factor = max(self.up, self.down)
        n = 2 * TAPS_PER_SIDE * factor + 1
        t = np.arange(n) - (n - 1) / 2
        cutoff = 1.0 / factor  # of the upsampled Nyquist
        h = cutoff * np.sinc(cutoff * t) * np.kaiser(n, KAISER_BETA)
        self._h = h * self.up  # zero-stuffing divides the level by ``up``
        self._hist = np.zeros(n - 1)
        self._phase = 0
        self.delay = (n - 1) / 2 / self.down
        """Group delay in output samples; callers shift placement back by it."""

    def process(self, x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        if not len(x):
            return np.zeros(0, np.int16)
        u = np.zeros(len(x) * self.up)
        u[:: self.up] = x
        buf = np.concatenate((self._hist, u))
        y = np.convolve(buf, self._h, mode="valid")
        self._hist = buf[len(buf) - len(self._hist) :]
        out = y[self._phase :: self.down]
        self._phase = (self._phase - len(y)) % self.down
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)
