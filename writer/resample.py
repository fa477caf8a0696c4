"""Streaming rational resampler: a windowed-sinc low-pass applied in polyphase form, with
state kept between chunks.

Used when the directions of a call (or a codec switch) have different sample rates, and
for encoders that accept fewer rates: lower-rate audio is brought up with a proper filter
rather than repeated or interpolated samples. Only the filter taps that meet non-zero
samples are computed, so odd ratios (11025 -> 48000) cost as little as even ones.
"""

from __future__ import annotations

from math import gcd

import numpy as np
import numpy.typing as npt

# Filter half-length in samples at the lower of the two rates: > 60 dB stopband with Kaiser.
TAPS_PER_SIDE = 16
KAISER_BETA = 8.0


class Resampler:
    """Converts a continuous stream from ``src`` Hz to ``dst`` Hz, chunk by chunk."""

    def __init__(self, src: int, dst: int) -> None:
        g = gcd(src, dst)
        up, down = dst // g, src // g
        self.up, self.down = up, down
        factor = max(up, down)
        n = 2 * TAPS_PER_SIDE * factor + 1
        t = np.arange(n) - (n - 1) / 2
        cutoff = 1.0 / factor  # of the upsampled rate's Nyquist
        h = cutoff * np.sinc(cutoff * t) * np.kaiser(n, KAISER_BETA) * up
        self.k = -(-n // up)  # taps per phase
        padded = np.zeros(self.k * up)
        padded[:n] = h
        self._phases = padded.reshape(self.k, up).T  # [phase, k] = h[phase + k * up]
        self._hist = np.zeros(self.k - 1)
        self._n_in = 0  # input samples consumed so far
        self._m = 0  # next output sample
        self.delay = (n - 1) / 2 / down
        """Group delay in output samples; callers shift placement back by it."""

    def process(self, x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        n = len(x)
        buf = np.concatenate((self._hist, x.astype(np.float64)))
        start = self._n_in - len(self._hist)  # global input index of buf[0]
        m_end = ((self._n_in + n) * self.up - 1) // self.down + 1 if n else self._m
        m = np.arange(self._m, m_end)
        base = (m * self.down) // self.up
        phase = (m * self.down) % self.up
        idx = (base - start)[:, None] - np.arange(self.k)[None, :]
        y = (self._phases[phase] * buf[idx]).sum(axis=1) if len(m) else np.zeros(0)
        self._m = m_end
        self._n_in += n
        self._hist = buf[len(buf) - (self.k - 1):] if self.k > 1 else np.zeros(0)
        out: npt.NDArray[np.int16] = np.clip(np.round(y), -32768, 32767).astype(np.int16)
        return out
