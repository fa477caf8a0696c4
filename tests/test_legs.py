"""Linking a B2BUA's legs: by Session-ID, by a configured header, waiting and expiry."""

from __future__ import annotations

from correlate.call import Call
from correlate.legs import LEG_WAIT_NS, NULL_UUID, Legs


def _call(serial: int, cid: str, **headers: str) -> Call:
    c = Call(f"k{serial}", cid, serial * 1000, serial)
    c.headers = {k.replace("_", "-").lower(): [v] for k, v in headers.items()}
    return c


def test_session_id_links_and_the_pair_ends_together() -> None:
    legs = Legs()
    a = _call(1, "a", session_id="ab" * 16)
    b = _call(2, "b", session_id=("ab" * 16).upper() + ";remote=" + "cd" * 16)
    legs.started(a)
    legs.started(b)
    assert legs.partner[1] is b and legs.partner[2] is a
    assert legs.ended(a, 10) is None and legs.holds(a)
    assert legs.ended(b, 20) is a and not legs.waiting and not legs.partner


def test_a_header_naming_the_other_call_id_links() -> None:
    legs = Legs("X-CID")
    a, b = _call(1, "a-leg"), _call(2, "b-leg", x_cid="a-leg")
    legs.started(a)
    legs.started(b)
    assert legs.partner[2] is a


def test_null_session_ids_and_strangers_do_not_link() -> None:
    legs = Legs()
    legs.started(_call(1, "a", session_id=NULL_UUID))
    legs.started(_call(2, "b", session_id=NULL_UUID))
    legs.started(_call(3, "c"))
    assert not legs.partner


def test_a_partner_that_never_ends_lets_the_leg_go_alone() -> None:
    legs = Legs()
    a, b = _call(1, "a", session_id="ef" * 16), _call(2, "b", session_id="ef" * 16)
    legs.started(a)
    legs.started(b)
    legs.ended(a, 0)
    assert legs.expired(LEG_WAIT_NS - 1) == []
    assert legs.expired(LEG_WAIT_NS) == [a]
    assert not legs.partner and not legs.waiting
    assert legs.ended(b, LEG_WAIT_NS + 5) is None and not legs.holds(b)


def test_apart_keeps_the_other_legs_link() -> None:
    legs = Legs()
    a, b = _call(1, "a", session_id="12" * 16), _call(2, "b", session_id="12" * 16)
    legs.started(a)
    legs.started(b)
    assert legs.apart(a) is b
    assert legs.apart(b) is a
