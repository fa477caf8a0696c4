"""The dashboard's door rules on their own: the login bound, number masking, the CSRF
check, which paths are public, and what a role or a share sees of a call's view."""

from __future__ import annotations

from calltap.access import (
    LOGIN_FAILURES,
    LOGIN_WINDOW_S,
    MAX_LOGIN_KEYS,
    LoginLimiter,
    csrf_ok,
    is_public,
    mask_number,
    shared_entry,
    view_for,
)
from calltap.accounts import ROLE_RIGHTS, Principal


def test_login_failures_are_bounded_per_key_and_in_time() -> None:
    lim = LoginLimiter()
    keys = ("user:ann", "addr:10.0.0.1")
    for k in range(LOGIN_FAILURES):
        assert lim.blocked(keys, 100.0 + k) == 0
        lim.failed(keys, 100.0 + k)
    wait = lim.blocked(keys, 105.0)
    assert 0 < wait <= LOGIN_WINDOW_S
    # another user from the same address is held too; the same user from elsewhere as well
    assert lim.blocked(("user:bob", "addr:10.0.0.1"), 105.0) > 0
    assert lim.blocked(("user:ann", "addr:10.0.0.2"), 105.0) > 0
    assert lim.blocked(keys, 100.0 + LOGIN_WINDOW_S + 1) == 0
    lim.succeeded("user:ann")
    assert lim.blocked(("user:ann", "addr:10.0.0.9"), 105.0) == 0


def test_the_limiter_forgets_the_oldest_beyond_its_bound() -> None:
    lim = LoginLimiter()
    for k in range(MAX_LOGIN_KEYS + 50):
        lim.failed((f"user:u{k}",), 1.0)
    assert len(lim._fails) == MAX_LOGIN_KEYS  # noqa: SLF001


def test_masking_keeps_two_digits_and_the_form() -> None:
    assert mask_number("sip:+442079460000@example.com") == "sip:+**********00@example.com"
    assert mask_number("tel:+12125550001;phone-context=x") == "tel:+*********01;phone-context=x"
    assert mask_number("sip:2002@192.0.2.10:5060") == "sip:**02@***.*.*.**:****"
    assert mask_number("") == "" and mask_number(None) is None
    e = shared_entry({"caller": "sip:+4930123@h", "callee": "sip:555@h", "call_id": "x",
                      "status": "completed"}, True)
    assert "call_id" not in e and e["caller"] == "sip:+*****23@h" and e["callee"] == "sip:*55@h"


def test_csrf_is_asked_of_sessions_only() -> None:
    s = Principal("ann", "viewer", ROLE_RIGHTS["viewer"], via="session", csrf="abc")
    assert not csrf_ok(s, {})
    assert not csrf_ok(s, {"x-csrf-token": "abd"})
    assert csrf_ok(s, {"x-csrf-token": "abc"})
    t = Principal("ann", "viewer", ROLE_RIGHTS["viewer"], via="token")
    assert csrf_ok(t, {})


def test_public_paths() -> None:
    for p in ("/login", "/api/login", "/static/app.js", "/s/abc", "/s/abc/audio",
              "/favicon.ico"):
        assert is_public(p), p
    for p in ("/", "/api/calls", "/logins", "/static", "/s", "/api/login/x", "/docs",
              "/openapi.json", "/audit"):
        assert not is_public(p), p


def test_what_each_sees_of_a_view() -> None:
    view = {"peaks": "p", "sip": [{"t": 0, "label": "INVITE", "text": "INVITE sip:..."}],
            "streams": [{"src": "10.0.0.1:4000"}], "dtmf": [{"t": 1.0, "digit": "5"}]}
    inv = Principal("i", "investigator", ROLE_RIGHTS["investigator"])
    assert view_for(view, inv) == view
    viewer = Principal("v", "viewer", ROLE_RIGHTS["viewer"])
    seen = view_for(view, viewer)
    assert seen["sip"] == [{"t": 0, "label": "INVITE"}] and seen["peaks"] == "p"
    share = Principal("share:x", "share", frozenset({"audio"}), via="share", share_call="c")
    got = view_for(view, share)
    assert got["sip"] == [] and got["streams"] == [] and got["dtmf"] == [{"t": 1.0}]
