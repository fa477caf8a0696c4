"""Timeline fidelity: a sender whose RTP clock runs fast stays aligned to capture time."""

from __future__ import annotations

import numpy as np
import pytest

from calltap.generate import RATE, GenOptions, alignment_error, generate, plan
from tests.helpers import load_index, load_summary, read_wav, run_import

# 2 minutes at 0.5% fast: 0.6 s of drift by the end, ten times what a 0.05% sender gathers in
# the same time, so a short test shows what an hour at 0.05% would (bench/ runs the hour).
OPTS = GenOptions(calls=1, duration=120.0, drift=0.005, loss=0.01, jitter_ms=8.0, seed=21)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, dict, int]:  # type: ignore[type-arg]
    base = tmp_path_factory.mktemp("drift")
    generate(str(base / "d.pcap"), OPTS)
    run_import([base / "d.pcap"], base / "o")
    (entry,) = load_index(base / "o")
    audio, rate = read_wav(base / "o" / entry["audio"])
    assert rate == RATE
    return audio, load_summary(base / "o", entry), 0


def test_both_channels_stay_aligned_to_the_end(recorded) -> None:  # type: ignore[no-untyped-def]
    audio, summary, _ = recorded
    (gc,) = plan(OPTS)
    origin = summary["audio_start_ns"]
    for at in (5, 60, 115):  # seconds into the sender's own audio
        for side in (0, 1):
            rate = 1 + OPTS.drift if side == 0 else 1.0
            captured_ns = gc.media_start_ns[side] + at * 1_000_000_000 / rate
            expected = round((captured_ns - origin) * RATE / 1e9)
            err = alignment_error(audio[:, side], gc.index, side, at * RATE, expected)
            assert abs(err) <= 160, (side, at, err)  # within one 20 ms packet


def test_drift_is_reported(recorded) -> None:  # type: ignore[no-untyped-def]
    _audio, summary, _ = recorded
    caller, callee = summary["directions"]
    drift = caller["segments"][0]["clock_drift_ppm"]
    assert len(caller["segments"]) == 1 and abs(drift + 5000 / 1.005) < 100
    assert abs(callee["segments"][0]["clock_drift_ppm"]) < 50
