"""Single sign-on against a real OpenID Connect provider the test starts on loopback
(oidc-provider-mock: authlib's authorization server, RS256 ID tokens, published keys): a
known user signs in and gets their role and limits; an unknown one, a replayed or altered
answer, a token for another client and a provider naming another issuer get no session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from calltap.accounts import Accounts
from calltap.catalog import Scope
from calltap.oidc import Flow, Oidc, OidcError
from calltap.serve import create_app

mock = pytest.importorskip("oidc_provider_mock")
httpx = pytest.importorskip("httpx")

PW = "a long enough password"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def app(tmp_path: Path, provider: str) -> Any:
    acc = Accounts(str(tmp_path / "access.sqlite"))
    acc.add_user("ann@example.com", PW, "listener", Scope(prefixes=("+44",)), "t")
    return create_app(str(tmp_path), acc, loopback=False,
                      oidc=Oidc(provider, "calltap-test", "client-secret"))


def _authorize(url: str, sub: str) -> str:
    """The provider's consent form, answered as ``sub``: where it sends the browser back."""
    r = httpx.post(url, data={"sub": sub, "action": "allow"}, follow_redirects=False)
    assert r.status_code in (302, 303), r.text[:300]
    return str(r.headers["location"])


def test_a_known_user_signs_in_with_their_role(app: Any) -> None:
    c = TestClient(app, follow_redirects=False)
    page = c.get("/login")
    assert "/login/oidc" in page.text  # the page offers single sign-on
    r = c.get("/login/oidc?next=/overview")
    assert r.status_code == 303
    back = _authorize(r.headers["location"], "ann@example.com")
    assert back.startswith("http://testserver/login/oidc/callback?")
    r = c.get(back.removeprefix("http://testserver"))
    assert r.status_code == 303 and r.headers["location"] == "/overview", r.text
    me = c.get("/api/me").json()
    assert me["user"] == "ann@example.com" and me["role"] == "listener" and me["csrf"]
    rows = app.state.dashboard.accounts.audit_rows()
    assert [(x["action"], x["target"], x["outcome"]) for x in rows][-1] == (
        "login", "ann@example.com via single sign-on", "ok")
    # the same answer again (a replay) opens nothing: the flow's cookie is gone
    c2 = TestClient(app, follow_redirects=False)
    assert c2.get(back.removeprefix("http://testserver")).status_code == 403


def test_an_unknown_user_or_an_altered_answer_gets_no_session(app: Any) -> None:
    c = TestClient(app, follow_redirects=False)
    r = c.get("/login/oidc")
    back = _authorize(r.headers["location"], "mallory@example.com")
    r = c.get(back.removeprefix("http://testserver"))
    assert r.status_code == 403 and "not a user here" in r.text
    assert c.get("/api/me").status_code == 401
    r = c.get("/login/oidc")
    back = _authorize(r.headers["location"], "ann@example.com")
    q = parse_qs(urlsplit(back).query)
    altered = f"/login/oidc/callback?code={q['code'][0]}&state=not-the-state"
    assert c.get(altered).status_code == 403
    assert c.get("/api/me").status_code == 401
    failed = [x for x in app.state.dashboard.accounts.audit_rows() if x["outcome"] != "ok"]
    assert [x["action"] for x in failed] == ["login", "login"]


def test_a_token_for_another_client_is_refused(provider: str) -> None:
    ours = Oidc(provider, "calltap-test", "s")
    theirs = Oidc(provider, "another-app", "s")
    url, flow = theirs.begin("http://x/cb", "/", time.time())
    back = _authorize(url, "ann@example.com")
    code = parse_qs(urlsplit(back).query)["code"][0]
    tokens = theirs.exchange("http://x/cb", code, flow.verifier)
    assert theirs.user_of(tokens["id_token"], flow.nonce) == "ann@example.com"
    ours.meta()
    with pytest.raises(OidcError, match="(?i)audience"):
        ours.user_of(tokens["id_token"], flow.nonce)
    with pytest.raises(OidcError, match="nonce"):
        theirs.user_of(tokens["id_token"], "another sign-in's nonce")
    head, body, sig = tokens["id_token"].split(".")
    k = len(sig) // 2
    altered = sig[:k] + ("A" if sig[k] != "A" else "B") + sig[k + 1:]
    with pytest.raises(OidcError, match="no published key"):
        theirs.user_of(f"{head}.{body}.{altered}", flow.nonce)
    with pytest.raises(OidcError, match="too long"):
        ours.finish("http://x/cb", code, flow.state, Flow(flow.state, flow.nonce,
                                                          flow.verifier, "/", 0.0),
                    time.time())


def test_a_provider_naming_another_issuer_is_refused() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Doc(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = json.dumps({"issuer": "https://elsewhere.example",
                               "authorization_endpoint": "x", "token_endpoint": "x",
                               "jwks_uri": "x"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Doc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(OidcError, match="names itself"):
            Oidc(f"http://127.0.0.1:{server.server_address[1]}", "c", "s").meta()
    finally:
        server.shutdown()
        server.server_close()
