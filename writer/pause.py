"""Digital silence over a call's paused spans, applied to the audio on its way to the file:
whatever a filter or a late packet left there, a paused span is written as zeros."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
NS = 1_000_000_000


class PauseMask:
    """Wraps an audio sink; frames inside a pause reach it as zeros."""

    def __init__(self, pauses: list[list[int]], zero_ns: int, rate: int,
                 sink: Callable[[Int16Array], None]) -> None:
        # [start, end) in frames of the output, from capture times; an open pause runs on
        self.spans = [((a - zero_ns) * rate // NS,
                       (b - zero_ns) * rate // NS + 1 if b else 1 << 62)
                      for a, b in pauses]
        self.sink = sink
        self.pos = 0

    def __call__(self, block: Int16Array) -> None:
        n = len(block)
        for a, b in self.spans:
            lo, hi = max(a, self.pos), min(b, self.pos + n)
            if lo < hi:
                block = block.copy() if block.base is not None or not block.flags.writeable \
                    else block
                block[lo - self.pos:hi - self.pos] = 0
        self.pos += n
        self.sink(block)
