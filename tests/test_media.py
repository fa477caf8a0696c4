from __future__ import annotations

from correlate.media import MAX_SHARED, OTHER, RTCP, RTP, MediaTable
from tests.helpers import ip4

A = ip4("192.0.2.1")


def test_set_replace_and_drop() -> None:
    m = MediaTable()
    m.set_side("c", 0, [(A, 4000)], [(A, 5000)])
    assert m.get((A, 4000)) == ("c", 0, RTP) and m.get((A, 4001)) == ("c", 0, RTCP)
    assert m.get((A, 5000)) == ("c", 0, OTHER)
    m.set_side("c", 0, [(A, 4100)], [])
    assert m.get((A, 4000)) is None and m.get((A, 4100)) == ("c", 0, RTP)
    m.drop_call("c")
    assert len(m) == 0


def test_newest_announcement_wins_and_old_call_does_not_remove_it() -> None:
    m = MediaTable()
    m.set_side("old", 1, [(A, 4000)], [])
    m.set_side("new", 1, [(A, 4000)], [])
    m.drop_call("old")
    assert m.get((A, 4000)) == ("new", 1, RTP)


def test_bound_refuses_and_counts() -> None:
    m = MediaTable(bound=3)
    m.set_side("c", 0, [(A, 4000), (A, 4002)], [])
    assert len(m) == 3 and m.refused == 1


def test_shared_endpoint_keeps_every_live_owner() -> None:
    m = MediaTable()
    m.set_side("c1", 1, [(A, 7000)], [])
    m.set_side("c2", 1, [(A, 7000)], [])
    assert m.get((A, 7000)) == ("c2", 1, RTP)
    assert m.owner_for((A, 7000), "c1") == ("c1", 1, RTP)
    m.drop_call("c2")  # the newer call ends: the older one has the address again
    assert m.get((A, 7000)) == ("c1", 1, RTP) and (A, 7000) not in m.shared
    m.drop_call("c1")
    assert m.get((A, 7000)) is None and len(m) == 0


def test_shared_endpoint_goes_back_to_the_newest_other_owner_and_is_bounded() -> None:
    m = MediaTable()
    calls = [f"c{i}" for i in range(MAX_SHARED + 3)]
    for c in calls:
        m.set_side(c, 1, [(A, 7000)], [])
    assert len(m.shared[(A, 7000)]) == MAX_SHARED  # the oldest are forgotten
    assert m.owner_for((A, 7000), calls[0]) is None
    assert m.owner_for((A, 7000), calls[3]) == (calls[3], 1, RTP)
    m.drop_call(calls[-3])  # neither the newest nor the oldest: the owner stays
    assert m.get((A, 7000)) == (calls[-1], 1, RTP)
    m.drop_call(calls[-1])  # the newest: the newest of the others takes the address
    assert m.get((A, 7000)) == (calls[-2], 1, RTP)
    m.set_side(calls[5], 1, [(A, 7000)], [])  # an older call announces it again
    assert m.get((A, 7000)) == (calls[5], 1, RTP)
    m.drop_call(calls[5])
    assert m.get((A, 7000)) == (calls[-2], 1, RTP)


def test_changes_are_kept_only_once_a_router_looks() -> None:
    from correlate.media import MAX_CHANGED

    m = MediaTable()
    m.set_side("c", 0, [(A, 4000)], [])
    assert m.changed is None  # live capture: nobody asks, nothing is kept
    m.changed = set()  # what a router's first look leaves
    m.set_side("c", 0, [(A, 4100)], [])
    assert m.changed == {(A, 4000), (A, 4001), (A, 4100), (A, 4101)}
    m.set_side("d", 1, [(A, p) for p in range(10_000, 10_000 + MAX_CHANGED, 2)], [])
    assert m.changed == {None}  # past the bound: everything counts as changed
