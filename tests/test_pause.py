from __future__ import annotations

import numpy as np

from writer.pause import PauseMask

NS = 1_000_000_000


def test_paused_frames_reach_the_sink_as_zeros_across_blocks() -> None:
    got: list[np.ndarray] = []
    # audio starts at t=5 s, 1000 frames/s; paused 6.0-6.5 s and from 9 s on
    mask = PauseMask([[6 * NS, 6 * NS + NS // 2], [9 * NS, 0]], 5 * NS, 1000, got.append)
    ones = np.ones((1000, 2), np.int16)
    for _ in range(5):
        block = ones.copy()
        mask(block[:700])
        mask(block[700:])
    out = np.concatenate(got)
    zero = np.flatnonzero(~out.any(axis=1))
    assert zero[0] == 1000 and zero[-1] == 4999
    assert set(zero.tolist()) == set(range(1000, 1501)) | set(range(4000, 5000))
