"""The access file: users and their passwords, tokens with scopes and expiry, sessions,
share links (signed, expiring, revocable, bound to one call) and the audit log."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from calltap.accounts import (
    MIN_PASSWORD,
    ROLE_RIGHTS,
    AccessError,
    Accounts,
    _b64,
    _unb64,
    check_scope,
)
from calltap.catalog import Scope

PW = "correct horse battery"
T0 = 1_800_000_000.0


@pytest.fixture()
def acc(tmp_path: Path) -> Accounts:
    a = Accounts(str(tmp_path / "access.sqlite"))
    a.add_user("ann", PW, "listener", Scope(prefixes=("+44",)), "t")
    a.add_user("root", PW + "!", "admin", Scope(), "t")
    return a


def test_the_file_is_the_owners_only_and_holds_no_password(acc: Accounts) -> None:
    assert stat.S_IMODE(os.stat(acc.path).st_mode) == 0o600
    raw = Path(acc.path).read_bytes() + b"".join(
        p.read_bytes() for p in Path(acc.path).parent.glob("access.sqlite-*"))
    assert PW.encode() not in raw
    assert acc.has_users()


def test_passwords(acc: Accounts) -> None:
    assert acc.check_password("ann", PW)
    assert not acc.check_password("ann", PW + "x")
    assert not acc.check_password("nobody", PW)
    with pytest.raises(AccessError, match="at least"):
        acc.add_user("bob", "x" * (MIN_PASSWORD - 1), "viewer", Scope(), "t")
    with pytest.raises(AccessError, match="exists"):
        acc.add_user("ann", PW, "viewer", Scope(), "t")
    with pytest.raises(AccessError, match="role"):
        acc.add_user("bob", PW, "owner", Scope(), "t")
    with pytest.raises(AccessError, match="user name"):
        acc.add_user("b ob", PW, "viewer", Scope(), "t")


def test_sessions_end_with_time_logout_and_a_new_password(acc: Accounts) -> None:
    cookie, csrf = acc.new_session("ann", T0)
    who = acc.session(cookie, T0 + 10)
    assert who is not None and who.name == "ann" and who.csrf == csrf
    assert who.rights == ROLE_RIGHTS["listener"] and who.scope.prefixes == ("+44",)
    assert acc.session(cookie, T0 + 13 * 3600) is None  # expired
    sid, _, sig = cookie.partition(".")
    assert acc.session(sid + "." + sig[:-2] + "AA", T0) is None  # signature altered
    assert acc.session(sid[:-1] + "x." + sig, T0) is None
    acc.end_session(cookie)
    assert acc.session(cookie, T0) is None
    cookie, _ = acc.new_session("ann", T0)
    acc.set_password("ann", PW + "2")
    assert acc.session(cookie, T0) is None


def test_tokens_are_bounded_by_role_scope_expiry_and_revocation(acc: Accounts) -> None:
    tok = acc.new_token("ann", ["read", "evidence"], 3600, T0, "t")
    who = acc.token(tok, T0 + 1)
    assert who is not None and who.via == "token"
    assert who.rights == frozenset({"read"})  # evidence: not a listener's right
    assert acc.token(tok, T0 + 3601) is None
    assert acc.token(tok[:-1] + ("A" if tok[-1] != "A" else "B"), T0) is None
    assert acc.token("ct_nothing_here", T0) is None
    acc.revoke_token(tok.split("_")[1])
    assert acc.token(tok, T0 + 1) is None
    with pytest.raises(AccessError, match="scopes"):
        acc.new_token("ann", ["everything"], 60, T0, "t")
    with pytest.raises(AccessError, match="days"):
        acc.new_token("ann", ["read"], 400 * 86400, T0, "t")
    tok = acc.new_token("ann", ["read"], 60, T0, "t")
    acc.remove_user("ann")
    assert acc.token(tok, T0) is None
    # only the hash is kept
    rows = sqlite3.connect(acc.path).execute("SELECT hash FROM tokens").fetchall()
    assert all(tok.split("_", 2)[2] not in r[0] for r in rows)


def test_share_links(acc: Accounts) -> None:
    sid, token = acc.new_share("callA", "ann", "audio", True, 3600, T0, "t")
    who = acc.share(token, T0 + 5)
    assert who is not None and who.share_call == "callA" and who.share_mask
    assert who.rights == frozenset({"audio"})
    assert acc.share(token, T0 + 3601) is None  # expired
    body, _, sig = token.partition(".")
    # a changed call id, with the old signature: refused
    forged = _unb64(body).replace(b"callA", b"callB")
    assert acc.share(_b64(forged) + "." + sig, T0) is None
    assert acc.share(body + "." + sig[:-1] + ("A" if sig[-1] != "A" else "B"), T0) is None
    assert acc.share("garbage", T0) is None
    viewer = acc.principal("root", "session")
    assert viewer is not None
    assert acc.revoke_share(sid, viewer) == "callA"
    assert acc.share(token, T0 + 5) is None
    _sid2, token2 = acc.new_share("callA", "ann", "audio+metadata", False, 60, T0, "t")
    two = acc.share(token2, T0)
    assert two is not None and two.rights == frozenset({"audio", "read"})
    other = acc.principal("ann", "session")
    assert other is not None
    acc.add_user("eve", PW, "listener", Scope(), "t")
    eve = acc.principal("eve", "session")
    assert eve is not None
    with pytest.raises(AccessError, match="no share"):
        acc.revoke_share(_sid2, eve)  # not hers, and she is no admin
    with pytest.raises(AccessError, match="scope"):
        acc.new_share("callA", "ann", "everything", False, 60, T0, "t")


def test_audit_is_in_order_and_paged(acc: Accounts) -> None:
    for k in range(2500):
        acc.audit("t", "ann", "search", f"q={k}", "127.0.0.1")
    rows = list(acc.audit_all())
    assert [r["target"] for r in rows] == [f"q={k}" for k in range(2500)]
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert len(acc.audit_rows(0, 10)) == 10


def test_scope_checks() -> None:
    assert check_scope(["+44"], ["10.0.0.0/8"], ["sales"]) == Scope(("+44",), ("10.0.0.0/8",),
                                                                  ("sales",))
    with pytest.raises(AccessError, match="cidr"):
        check_scope([], ["10.0.0.300/8"], [])
    with pytest.raises(AccessError, match="prefix"):
        check_scope(["4%"], [], [])
    assert not Scope() and Scope(groups=("a",))


def test_the_signing_key_survives_a_reopen(tmp_path: Path) -> None:
    a = Accounts(str(tmp_path / "a.sqlite"))
    a.add_user("ann", PW, "viewer", Scope(), "t")
    cookie, _ = a.new_session("ann", T0)
    a.close()
    b = Accounts(str(tmp_path / "a.sqlite"))
    assert b.session(cookie, T0) is not None
