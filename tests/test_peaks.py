"""Waveform peaks as blocks pass: the same as min/max per bucket over the whole audio,
whatever the block sizes, the last bucket partial; the audio reaches the sink unchanged."""

from __future__ import annotations

import numpy as np

from writer.peaks import Peaks


def test_peaks_equal_the_whole_audio_reduced_per_bucket() -> None:
    rng = np.random.default_rng(4)
    audio = rng.integers(-32768, 32767, (8000 * 3 + 77, 2)).astype(np.int16)
    got: list[np.ndarray] = []
    p = Peaks(8000, got.append)
    at = 0
    while at < len(audio):
        n = int(rng.integers(1, 5000))
        p(audio[at:at + n])
        at += n
    lo, hi = p.finish()
    assert np.array_equal(np.concatenate(got), audio)
    buckets = [audio[k:k + 160] for k in range(0, len(audio), 160)]
    assert np.array_equal(lo, np.array([b.min(axis=0) for b in buckets]))
    assert np.array_equal(hi, np.array([b.max(axis=0) for b in buckets]))


def test_no_audio_no_peaks() -> None:
    lo, hi = Peaks(16000, lambda _b: None).finish()
    assert lo.shape == hi.shape == (0, 2)
