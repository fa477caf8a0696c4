"""The view file's marks: loss where sequence numbers skip (across a wrap too), nothing
where they do not; times of RFC 3339 as the summary writes them."""

from __future__ import annotations

import numpy as np

from writer.timefmt import parse_time
from writer.view import BUCKET_NS, LOSS, _losses

MS = 1_000_000


def test_loss_marks_the_buckets_of_missing_packets() -> None:
    seq = np.array([65530, 65531, 65532, 65535, 0, 1, 2, 5, 6], np.int64)  # 2 and 2 lost
    ts = np.array([0, 20, 40, 100, 120, 140, 160, 220, 240], np.int64) * MS
    flags = np.zeros(20, np.uint8)
    _losses(flags, 0, ts, seq, np.zeros(len(seq), np.int64))
    marked = np.flatnonzero(flags & LOSS).tolist()
    assert marked == [3, 4, 9, 10]  # between 40 and 100 ms, and between 160 and 220 ms


def test_no_loss_in_order_or_reordered() -> None:
    seq = np.array([10, 12, 11, 13], np.int64)
    ts = np.arange(4, dtype=np.int64) * 20 * MS
    flags = np.zeros(10, np.uint8)
    _losses(flags, 0, ts, seq, np.zeros(4, np.int64))
    assert not flags.any()
    assert BUCKET_NS == 20 * MS


def test_parse_time() -> None:
    assert parse_time("2026-01-15T10:00:00.250000Z") == 1768471200250000000
    assert parse_time(None) is None
