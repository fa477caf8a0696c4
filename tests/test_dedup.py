from __future__ import annotations

from capture.dedup import Deduplicator

MS = 1_000_000


def test_copies_within_the_window_are_dropped() -> None:
    d = Deduplicator(window_ns=100 * MS)
    assert not d.seen(0, 1) and d.seen(1 * MS, 1)
    assert not d.seen(1 * MS, 2)
    assert not d.seen(600 * MS, 1)  # a SIP retransmission 500 ms later is kept
    assert d.duplicates == 1


def test_bounded() -> None:
    d = Deduplicator(window_ns=10**12, max_entries=100)
    for k in range(1000):
        d.seen(k, k)
    assert len(d._seen) <= 100 and len(d._order) <= 100
    assert not d.seen(2000, 0)  # forgotten when the table overflowed: kept, never wrongly dropped
