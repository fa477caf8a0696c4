"""A listener-side jitter buffer model: which packets a receiving phone would have played
too late, and how much delay its buffer added. Sans-IO: fed each packet's delay.

Fixed: a constant depth behind the least-delayed packet so far. Adaptive: the depth follows
the jitter (JITTER_FACTOR times the RFC 3550 estimate, within [min, max]), moving only at a
talkspurt start (marker bit) as phones do to avoid audible glitches, and growing at once to
cover a late packet (which is still lost) when a delay spike exceeds it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from writer.errors import WriterError

MODES = ("fixed", "adaptive")
# Depth an adaptive buffer aims for, in multiples of the interarrival jitter: enough to hold
# nearly all of a Gaussian-like delay spread (the usual 3-4x rule of VoIP endpoints).
JITTER_FACTOR = 4.0


class JitterBuffer:
    """Discards and depth of one stream's modelled jitter buffer."""

    __slots__ = ("mode", "depth_ms", "min_ms", "max_ms", "discards", "_floor", "_depth_sum",
                 "_n")

    def __init__(self, mode: str = "fixed", depth_ms: float = 60.0, min_ms: float = 20.0,
                 max_ms: float = 200.0) -> None:
        if mode not in MODES:
            raise WriterError(f"jitter buffer mode {mode!r} is not one of {', '.join(MODES)}")
        if not 0 < min_ms <= depth_ms <= max_ms:
            raise WriterError("jitter buffer depths must satisfy 0 < min <= depth <= max")
        self.mode = mode
        self.depth_ms = depth_ms
        self.min_ms = min_ms
        self.max_ms = max_ms
        self.discards = 0
        self._floor: float | None = None
        self._depth_sum = 0.0
        self._n = 0

    def add(self, delay_ms: float, jitter_ms: float, talkspurt: bool) -> bool:
        """Feed one packet's delay (any fixed origin); True when it arrived too late to play."""
        if self._floor is None or delay_ms < self._floor:
            self._floor = delay_ms
        late = delay_ms - self._floor
        if self.mode == "adaptive" and talkspurt:
            target = JITTER_FACTOR * jitter_ms
            self.depth_ms = min(self.max_ms, max(self.min_ms, target))
        self._depth_sum += self.depth_ms
        self._n += 1
        if late <= self.depth_ms:
            return False
        self.discards += 1
        if self.mode == "adaptive":
            self.depth_ms = min(self.max_ms, late)
        return True

    def add_many(self, delays: npt.NDArray[np.float64], jitters: npt.NDArray[np.float64],
                 talkspurts: npt.NDArray[np.bool_], restarts: npt.NDArray[np.bool_]) -> None:
        """``add`` for a run of packets, with ``restart`` before those marked."""
        if self.mode == "adaptive":
            for d, j, ts, r in zip(delays.tolist(), jitters.tolist(), talkspurts.tolist(),
                                   restarts.tolist(), strict=True):
                if r:
                    self.restart()
                self.add(d, j, ts)
            return
        # fixed: the floor is a running minimum, started again at each restart
        cuts = np.flatnonzero(restarts).tolist()
        bounds = [0, *[c for c in cuts if c > 0], len(delays)]
        if cuts and cuts[0] == 0:
            self._floor = None
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if a > 0:
                self._floor = None
            seg = delays[a:b]
            if not len(seg):
                continue
            floor = np.minimum.accumulate(seg)
            if self._floor is not None:
                floor = np.minimum(floor, self._floor)
            self.discards += int(np.count_nonzero(seg - floor > self.depth_ms))
            self._floor = float(floor[-1])
        self._depth_sum += self.depth_ms * len(delays)
        self._n += len(delays)

    def restart(self) -> None:
        """Forget the delay floor (the sender restarted its timestamps)."""
        self._floor = None

    @property
    def mean_depth_ms(self) -> float:
        """Average buffering delay the listener heard."""
        return self._depth_sum / self._n if self._n else self.depth_ms
