"""Waveform peaks of a recording as it is written: per channel, the lowest and highest
sample of each PEAK_MS of output, so a page can draw an hour-long call without its audio."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]

# One bucket per 20 ms: a packet's worth of audio, the finest detail a page can use.
PEAK_MS = 20


class Peaks:
    """Wraps an audio sink of (frames, 2) blocks; keeps min and max per bucket and channel.
    The count of buckets follows the recording's length, which its capture span bounds."""

    def __init__(self, rate: int, sink: Callable[[Int16Array], None]) -> None:
        self.bucket = max(1, rate * PEAK_MS // 1000)
        self.sink = sink
        self._carry: Int16Array = np.zeros((0, 2), np.int16)
        self._lo: list[Int16Array] = []
        self._hi: list[Int16Array] = []

    def __call__(self, block: Int16Array) -> None:
        self.sink(block)
        data = np.concatenate((self._carry, block)) if len(self._carry) else block
        whole = len(data) // self.bucket * self.bucket
        if whole:
            # channel-major first: a reduction along the contiguous axis is many times
            # faster than one across the interleaved frames
            b = np.ascontiguousarray(data[:whole].T).reshape(2, -1, self.bucket)
            self._lo.append(b.min(axis=2).T)
            self._hi.append(b.max(axis=2).T)
        self._carry = np.array(data[whole:], np.int16)

    def finish(self) -> tuple[Int16Array, Int16Array]:
        """(min, max), each (buckets, 2); the last bucket may be partial."""
        lo, hi = list(self._lo), list(self._hi)
        if len(self._carry):
            lo.append(self._carry.min(axis=0, keepdims=True))
            hi.append(self._carry.max(axis=0, keepdims=True))
        if not lo:
            empty: Int16Array = np.zeros((0, 2), np.int16)
            return empty, empty
        return np.concatenate(lo), np.concatenate(hi)
