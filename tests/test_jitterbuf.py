from __future__ import annotations

import pytest

from writer.errors import WriterError
from writer.jitterbuf import JitterBuffer


def test_fixed_buffer_drops_only_what_is_later_than_its_depth() -> None:
    jb = JitterBuffer("fixed", 60.0)
    delays = [0.0, 10.0, 59.0, 61.0, -5.0, 56.0, 55.0]
    late = [jb.add(d, 0.0, False) for d in delays]
    # 61 ms behind the floor of 0 is late; once -5 is the floor, 56 is 61 behind
    assert late == [False, False, False, True, False, True, False]
    assert jb.discards == 2 and jb.mean_depth_ms == 60.0


def test_adaptive_buffer_follows_jitter_at_talkspurts_and_spikes() -> None:
    jb = JitterBuffer("adaptive", 60.0, 20.0, 200.0)
    assert not jb.add(0.0, 2.0, True)  # talkspurt: depth = max(20, 4 * 2) = 20
    assert jb.depth_ms == 20.0
    assert not jb.add(15.0, 2.0, False)
    assert jb.add(45.0, 2.0, False)  # a spike: lost, and the buffer grows to cover it
    assert jb.depth_ms == 45.0
    assert not jb.add(44.0, 2.0, False)
    assert not jb.add(0.0, 30.0, True)  # next talkspurt: 4 x 30 = 120
    assert jb.depth_ms == 120.0
    assert jb.add(500.0, 30.0, False) and jb.depth_ms == 200.0  # never beyond the maximum
    assert 20.0 < jb.mean_depth_ms < 200.0


def test_restart_forgets_the_floor() -> None:
    jb = JitterBuffer("fixed", 60.0)
    jb.add(-1000.0, 0.0, False)
    jb.restart()
    assert not jb.add(0.0, 0.0, False)


@pytest.mark.parametrize("args", [("elastic", 60.0, 20.0, 200.0), ("fixed", 10.0, 20.0, 200.0),
                                  ("adaptive", 300.0, 20.0, 200.0)])
def test_bad_settings_are_refused(args: tuple[str, float, float, float]) -> None:
    with pytest.raises(WriterError):
        JitterBuffer(*args)
