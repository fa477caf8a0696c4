"""The dashboard with users, route by route and role by role, over a real import: nothing
answers without a session or token, each role gets exactly its rights, a user limited to
a number prefix never meets another call anywhere, share links open their call and
nothing else, CSRF-less state changes are refused, and the audit log records every
action in order without a password or token in it."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from calltap.access import mask_number
from calltap.accounts import Accounts
from calltap.catalog import Scope, user_part
from calltap.generate import GenOptions, generate
from calltap.serve import access_path, create_app
from tests.helpers import load_index, run_import

PW = "a long enough password"
ROLES = ("viewer", "listener", "investigator", "admin")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    d = tmp_path_factory.mktemp("access")
    pcap = d / "g.pcap"
    generate(str(pcap), GenOptions(calls=7, duration=2.0, varied=True, seed=9))
    run_import([pcap], d / "out", jobs=1)
    acc = Accounts(access_path(str((d / "out").resolve())))
    for role in ROLES:
        acc.add_user(role, PW, role, Scope(), "t")
    acc.add_user("uk", PW, "investigator", Scope(prefixes=("+44",)), "t")
    app = create_app(str(d / "out"), acc, loopback=False)
    yield d / "out", app
    acc.close()


def login(app: Any, user: str, password: str = PW) -> TestClient:
    c = TestClient(app)
    page = c.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and token
    r = c.post("/api/login", json={"user": user, "password": password},
               headers={"X-CSRF-Token": token.group(1)})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


def ids(out: Path) -> dict[str, dict[str, Any]]:
    return {Path(e["summary"]).name.removesuffix(".json"): e for e in load_index(out)}


def uk_calls(out: Path) -> set[str]:
    """The calls the +44 user may see, worked out from the index alone."""
    return {k for k, e in ids(out).items()
            if user_part(e["caller"]).startswith("+44") or user_part(e["callee"]).startswith("+44")}


def _fill(path: str, call: str) -> str:
    return (path.replace("{call_id}", call).replace("{kind}", "summary")
            .replace("{token}", "x.y").replace("{sid}", "nope"))


PUBLIC = {"/login", "/api/login", "/s/{token}", "/s/{token}/call", "/s/{token}/view",
          "/s/{token}/audio", "/favicon.ico", "/login/oidc", "/login/oidc/callback"}


def test_no_route_answers_without_a_session_or_token(site: tuple[Path, Any]) -> None:
    out, app = site
    call = next(iter(ids(out)))
    anon = TestClient(app, follow_redirects=False)
    checked = 0
    for route in app.routes:
        if not isinstance(route, APIRoute) and route.path not in ("/docs", "/openapi.json",
                                                                   "/redoc"):
            continue
        for method in getattr(route, "methods", None) or {"GET"}:
            if method == "HEAD":
                continue
            path = _fill(route.path, call)
            r = anon.request(method, path)
            if route.path in PUBLIC:
                # 404: single sign-on not configured here
                assert r.status_code in (200, 204, 403, 404), (method, path, r.status_code)
                continue
            checked += 1
            if path.startswith("/api/") or method != "GET":
                assert r.status_code == 401, (method, path, r.status_code)
            else:
                assert r.status_code == 303 and r.headers["location"].startswith("/login")
            # a made-up session cookie or token opens nothing either
            bad = anon.request(method, path, headers={"Authorization": "Bearer ct_ab_cd"})
            assert bad.status_code in (401, 303), (method, path)
            anon.cookies.set("calltap_session", "forged.cookie")
            assert anon.request(method, path).status_code in (401, 303), (method, path)
            anon.cookies.clear()
    assert checked >= 20
    assert anon.get("/static/app.js").status_code == 200


# (method, path, the roles that may): 403 for the others
RIGHTS = [
    ("GET", "/api/calls", ROLES),
    ("GET", "/api/calls.csv", ROLES),
    ("GET", "/api/calls/{call_id}", ROLES),
    ("GET", "/api/calls/{call_id}/view", ROLES),
    ("GET", "/api/overview", ROLES),
    ("GET", "/api/me", ROLES),
    ("GET", "/api/calls/{call_id}/files/metadata", ROLES),
    ("GET", "/api/calls/{call_id}/files/summary", ROLES),
    ("GET", "/api/calls/{call_id}/files/view", ROLES),
    ("GET", "/api/calls/{call_id}/files/audio", ROLES[1:]),
    ("GET", "/api/calls/{call_id}/audio", ROLES[1:]),
    ("POST", "/api/calls/{call_id}/shares", ROLES[1:]),
    ("GET", "/api/shares", ROLES[1:]),
    ("GET", "/api/calls/{call_id}/sip", ROLES[2:]),
    ("GET", "/api/calls/{call_id}/files/sip_pcap", ROLES[2:]),
    ("GET", "/api/calls/{call_id}/zip", ROLES[2:]),
    ("GET", "/api/audit", ROLES[3:]),
    ("GET", "/api/audit.csv", ROLES[3:]),
    ("GET", "/audit", ROLES[3:]),
    ("GET", "/", ROLES),
    ("GET", "/overview", ROLES),
    ("GET", "/calls/{call_id}", ROLES),
]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_its_rights(site: tuple[Path, Any], role: str) -> None:
    out, app = site
    call = next(iter(ids(out)))
    c = login(app, role)
    for method, path, allowed in RIGHTS:
        r = c.request(method, path.replace("{call_id}", call),
                      json={"scope": "audio"} if method == "POST" else None)
        if role in allowed:
            assert r.status_code == 200, (role, method, path, r.status_code, r.text[:200])
        else:
            assert r.status_code == 403, (role, method, path, r.status_code)
    view = c.get(f"/api/calls/{call}/view").json()
    has_text = any("text" in m for m in view["sip"])
    assert has_text == (role in ROLES[2:])


def test_token_rights_are_the_role_within_the_scopes(site: tuple[Path, Any]) -> None:
    out, app = site
    call = next(iter(ids(out)))
    acc: Accounts = app.state.dashboard.accounts
    tok = acc.new_token("investigator", ["read", "audio"], 3600, app.state.dashboard.clock(),
                        "t")
    c = TestClient(app, headers={"Authorization": f"Bearer {tok}"})
    assert c.get("/api/calls").status_code == 200
    assert c.get(f"/api/calls/{call}/audio").status_code == 200
    assert c.get(f"/api/calls/{call}/zip").status_code == 403  # evidence: not in the token
    # a token is no ambient credential: POSTs need no CSRF header
    assert c.post(f"/api/calls/{call}/shares", json={}).status_code == 403  # no share scope
    expired = acc.new_token("admin", ["read"], 1, app.state.dashboard.clock() - 10, "t")
    assert TestClient(app, headers={"Authorization": f"Bearer {expired}"}
                      ).get("/api/calls").status_code == 401


def test_a_prefix_limited_user_never_meets_another_call(site: tuple[Path, Any]) -> None:
    out, app = site
    mine, every = uk_calls(out), set(ids(out))
    assert mine and mine != every
    c = login(app, "uk")
    found: set[str] = set()
    body = c.get("/api/calls?limit=2").json()
    assert body["total"] == len(mine)
    while True:
        found |= {x["id"] for x in body["calls"]}
        if not body["next"]:
            break
        body = c.get("/api/calls", params={"limit": 2, "cursor": body["next"]}).json()
    assert found == mine
    rows = list(csv.DictReader(io.StringIO(c.get("/api/calls.csv").text)))
    assert {r["id"] for r in rows} == mine
    assert c.get("/api/calls", params={"party": "2002"}).json()["total"] == 0
    assert c.get("/api/overview").json()["calls"] == len(mine)
    for other in every - mine:
        for path in ("", "/view", "/sip", "/audio", "/zip", "/files/audio", "/files/summary",
                     "/files/sip_pcap"):
            assert c.get(f"/api/calls/{other}{path}").status_code == 404, path
        assert c.get(f"/calls/{other}").status_code == 404
        assert c.post(f"/api/calls/{other}/shares", json={}).status_code == 404
    for k in mine:
        assert c.get(f"/api/calls/{k}/audio").status_code == 200


def test_share_links(site: tuple[Path, Any]) -> None:
    out, app = site
    dash = app.state.dashboard
    calls = sorted(uk_calls(out))
    call, other = calls[0], sorted(set(ids(out)) - {calls[0]})[0]
    c = login(app, "listener")
    made = c.post(f"/api/calls/{call}/shares",
                  json={"scope": "audio+metadata", "mask": True, "hours": 1}).json()
    url = made["url"]
    anon = TestClient(app, follow_redirects=False)
    assert anon.get(url).status_code == 200
    assert anon.get(url + "/audio").content == (out / ids(out)[call]["audio_files"][0]
                                                ).read_bytes()
    meta = anon.get(url + "/call").json()
    caller = ids(out)[call]["caller"]
    assert "call_id" not in meta and meta["caller"] == mask_number(caller) != caller
    view = anon.get(url + "/view").json()
    assert view["sip"] == [] and view["streams"] == []
    # it opens nothing else: not the API, not another call, not the list
    token = url.removeprefix("/s/")
    for path in ("/api/calls", f"/api/calls/{call}", f"/api/calls/{other}/audio", "/"):
        assert anon.get(path, headers={"Authorization": f"Bearer {token}"}
                        ).status_code in (401, 303)
        anon.cookies.set("calltap_session", token)
        assert anon.get(path).status_code in (401, 303)
        anon.cookies.clear()
    # audio only: no metadata
    audio_only = c.post(f"/api/calls/{call}/shares", json={"scope": "audio"}).json()["url"]
    assert anon.get(audio_only + "/audio").status_code == 200
    assert anon.get(audio_only + "/call").status_code == 403
    # tampered: another call's id in the body, or the signature changed
    body, _, sig = token.partition(".")
    import base64
    import json

    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[1] = other
    forged = base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()
                                      ).rstrip(b"=").decode()
    assert anon.get(f"/s/{forged}.{sig}/audio").status_code == 403
    assert anon.get(f"/s/{body}.{sig[:-2]}xx/audio").status_code == 403
    # expired: the same link an hour and a minute on
    real = dash.clock
    dash.clock = lambda: real() + 3660
    try:
        assert anon.get(url + "/audio").status_code == 403
    finally:
        dash.clock = real
    # revoked
    assert c.post(f"/api/shares/{made['id']}/revoke").status_code == 200
    assert anon.get(url + "/audio").status_code == 403
    assert anon.get(url).status_code == 403


def test_state_changes_without_the_csrf_token_are_refused(site: tuple[Path, Any]) -> None:
    out, app = site
    call = next(iter(ids(out)))
    c = login(app, "admin")
    good = c.headers.pop("X-CSRF-Token")
    assert c.post(f"/api/calls/{call}/shares", json={}).status_code == 403
    assert c.post(f"/api/calls/{call}/shares", json={},
                  headers={"X-CSRF-Token": good[:-1] + "x"}).status_code == 403
    assert c.post("/api/logout").status_code == 403
    assert c.post(f"/api/calls/{call}/shares", json={},
                  headers={"X-CSRF-Token": good}).status_code == 200
    # the login form's own token
    fresh = TestClient(app)
    fresh.get("/login")
    assert fresh.post("/api/login", json={"user": "admin", "password": PW}).status_code == 403
    assert fresh.post("/api/login", json={"user": "admin", "password": PW},
                      headers={"X-CSRF-Token": "guess"}).status_code == 403


def test_signing_in_again_over_a_session_works(site: tuple[Path, Any]) -> None:
    _out, app = site
    c = login(app, "viewer")
    c.headers.pop("X-CSRF-Token")
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert token
    r = c.post("/api/login", json={"user": "listener", "password": PW},
               headers={"X-CSRF-Token": token.group(1)})
    assert r.status_code == 200 and c.get("/api/me").json()["user"] == "listener"


def test_failed_logins_are_bounded(site: tuple[Path, Any]) -> None:
    _out, app = site
    c = TestClient(app)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert token
    h = {"X-CSRF-Token": token.group(1)}
    codes = [c.post("/api/login", json={"user": "viewer", "password": "wrong one"},
                    headers=h).status_code for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    # even the right password waits now (the bound is what slows a guesser)
    assert c.post("/api/login", json={"user": "viewer", "password": PW},
                  headers=h).status_code == 429
    app.state.dashboard.limiter.succeeded("user:viewer")
    app.state.dashboard.limiter._fails.clear()  # noqa: SLF001 - the next tests sign in


def test_the_audit_log_has_every_action_in_order(tmp_path: Path) -> None:
    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=2, duration=1.0, seed=4))
    run_import([pcap], tmp_path / "out", jobs=1)
    acc = Accounts(str(tmp_path / "access.sqlite"))
    acc.add_user("ann", PW, "investigator", Scope(), "t")
    acc.add_user("root", PW, "admin", Scope(), "t")
    app = create_app(str(tmp_path / "out"), acc, loopback=False)
    call = sorted(ids(tmp_path / "out"))[0]
    c = TestClient(app)
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert tok
    c.post("/api/login", json={"user": "ann", "password": "not it at all"},
           headers={"X-CSRF-Token": tok.group(1)})
    c = login(app, "ann")
    c.get("/api/calls?party=44")
    c.get(f"/api/calls/{call}")
    c.get(f"/api/calls/{call}/audio")
    c.get(f"/api/calls/{call}/audio", headers={"Range": "bytes=100-"})  # the same play
    c.get(f"/api/calls/{call}/files/sip_pcap")
    c.get(f"/api/calls/{call}/zip")
    c.get("/api/calls.csv?status=completed")
    share = c.post(f"/api/calls/{call}/shares", json={"scope": "audio"}).json()
    TestClient(app).get(share["url"])
    c.post(f"/api/shares/{share['id']}/revoke")
    TestClient(app).get(share["url"])
    c.get("/api/audit")  # not an admin: denied, and logged
    c.post("/api/logout")
    root = login(app, "root")
    rows = root.get("/api/audit").json()["entries"]
    got = [(r["user"], r["action"], r["outcome"]) for r in rows]
    sid = share["id"]
    assert got == [
        ("-", "login", "failed"), ("ann", "login", "ok"), ("ann", "search", "ok"),
        ("ann", "view", "ok"), ("ann", "play", "ok"), ("ann", "download", "ok"),
        ("ann", "download", "ok"), ("ann", "export-csv", "ok"), ("ann", "share", "ok"),
        (f"share:{sid}", "open-share", "ok"), ("ann", "revoke-share", "ok"),
        ("-", "share-refused", "refused"), ("ann", "denied", "needs admin"),
        ("ann", "logout", "ok"), ("root", "login", "ok")]
    assert rows[2]["target"] == "party=44" and rows[4]["target"] == call
    assert all(r["from"] == "testclient" for r in rows)
    dump = root.get("/api/audit.csv").text
    assert PW not in dump and "not it at all" not in dump
    assert share["url"].removeprefix("/s/") not in dump
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)


def test_a_plain_form_signs_in_without_script(site: tuple[Path, Any]) -> None:
    _out, app = site
    c = TestClient(app, follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert token
    r = c.post("/api/login", data={"user": "viewer", "password": PW, "csrf": token.group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert c.get("/api/me").json()["user"] == "viewer"
    bad = TestClient(app).post("/api/login", data={"user": "viewer", "password": PW,
                                                   "csrf": "forged"})
    assert bad.status_code == 403


def test_after_sign_in_only_this_sites_paths() -> None:
    from calltap.serve_access import _local

    assert _local("/") and _local("/calls/x?y=1")
    for other in ("//evil.example", "/\\evil.example", "https://evil.example", "/a\\b", ""):
        assert not _local(other), other
