"""Users in a real browser and a real server process: sign in through the login page, share
a call and open the link in a browser with no account, read the audit log; and a
`calltap serve` process whose output never shows a password, token or share link."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from calltap.accounts import Accounts
from calltap.catalog import Scope
from calltap.generate import GenOptions, generate
from calltap.serve import access_path
from tests.helpers import load_index, run_import
from tests.test_e2e_dashboard import ARGS, CHROMIUM

PW = "correct horse battery staple"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("access-e2e")
    pcap = d / "g.pcap"
    generate(str(pcap), GenOptions(calls=3, duration=3.0, varied=True, seed=5))
    run_import([pcap], d / "out", jobs=1)
    acc = Accounts(access_path(str((d / "out").resolve())))
    acc.add_user("ann", PW, "listener", Scope(), "t")
    acc.add_user("root", PW, "admin", Scope(), "t")
    acc.close()
    return d / "out"


def test_sign_in_share_and_open_the_link_without_an_account(out: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (.ci/setup installs it)")
    pytest.importorskip("playwright.sync_api")
    import uvicorn
    from playwright.sync_api import sync_playwright

    from calltap.serve import create_app

    port = _port()
    server = uvicorn.Server(uvicorn.Config(create_app(str(out)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    call = sorted(Path(e["summary"]).name.removesuffix(".json") for e in load_index(out))[0]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(f"{url}/calls/{call}")
            assert "/login" in page.url  # not signed in: to the login page, and back after
            page.fill("input[name=user]", "ann")
            page.fill("input[name=password]", "wrong password here")
            page.click("button[type=submit]")
            page.wait_for_selector("#error:not(:empty)")
            assert "wrong" in page.inner_text("#error")
            page.fill("input[name=password]", PW)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/calls/{call}")
            page.wait_for_selector("body[data-ready='1']")
            assert "ann (listener)" in page.inner_text("#nav-user")
            assert page.is_hidden("#nav-audit")  # not an admin
            assert page.query_selector(".download-zip") is None  # no evidence right
            page.once("dialog", lambda d: d.accept())  # hide the numbers: yes
            page.click("#share")
            link = page.wait_for_selector("#share-url").get_attribute("value")
            assert link and link.startswith(url + "/s/")

            stranger = browser.new_context().new_page()  # no cookies, no account
            stranger.goto(link)
            stranger.wait_for_selector("body[data-ready='1']")
            title = stranger.inner_text("#title")
            assert "*" in title  # the numbers masked
            assert stranger.query_selector("#nav-out") is None
            stranger.click("#play")
            stranger.wait_for_function("document.getElementById('audio').currentTime > 0.3",
                                       timeout=10000)
            r = stranger.request.get(f"{url}/api/calls")
            assert r.status == 401  # the link opens its call and nothing else

            page.click("#nav-out")
            page.wait_for_url(re.compile(r".*/login.*"))
            admin = browser.new_context().new_page()
            admin.goto(f"{url}/audit")
            admin.fill("input[name=user]", "root")
            admin.fill("input[name=password]", PW)
            admin.click("button[type=submit]")
            admin.wait_for_url(f"{url}/audit")
            admin.wait_for_selector("body[data-ready='1']")
            text = admin.inner_text("#audit")
            for action in ("login", "view", "share", "open-share", "play", "logout"):
                assert action in text, action
            browser.close()
    finally:
        server.should_exit = True


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError:
        return 0, b""  # not listening yet


def test_no_secret_reaches_the_servers_output(out: Path, tmp_path: Path) -> None:
    port = _port()
    acc = Accounts(access_path(str(out.resolve())))
    token = acc.new_token("root", ["read", "audio", "share"], 3600, time.time(), "t")
    acc.close()
    proc = subprocess.Popen([sys.executable, "-m", "calltap.cli", "serve", "--out", str(out),
                             "--listen", f"0.0.0.0:{port}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while _get(url + "/login")[0] != 200:
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.2)
        call = sorted(Path(e["summary"]).name.removesuffix(".json") for e in load_index(out))[0]
        assert _get(url + "/api/calls")[0] == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert _get(url + "/api/calls", auth)[0] == 200
        req = urllib.request.Request(f"{url}/api/calls/{call}/shares", method="POST",
                                     data=b'{"scope": "audio"}', headers={
                                         **auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            link = json.load(r)["url"]
        assert _get(url + link)[0] == 200
        assert _get(url + link + "/audio")[0] == 200
        # a login, with its CSRF cookie, and a failed one
        with urllib.request.urlopen(url + "/login", timeout=10) as r:
            cookie = r.headers["Set-Cookie"].split(";")[0]
            csrf = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())
        assert csrf
        for password, code in ((PW + "x", 401), (PW, 200)):
            req = urllib.request.Request(url + "/api/login", method="POST", data=json.dumps(
                {"user": "ann", "password": password}).encode(), headers={
                "Content-Type": "application/json", "Cookie": cookie,
                "X-CSRF-Token": csrf.group(1)})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    assert r.status == code
            except urllib.error.HTTPError as e:
                assert e.code == code
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate(5)
    for secret in (PW, token, token.split("_", 2)[2], link.removeprefix("/s/")):
        assert secret not in output
    acc = Accounts(access_path(str(out.resolve())))
    rows = list(acc.audit_all())
    audit = json.dumps(rows)
    for secret in (PW, token.split("_", 2)[2], link.removeprefix("/s/")):
        assert secret not in audit
    logins = [(r["target"], r["outcome"]) for r in rows if r["action"] == "login"]
    assert logins[-2:] == [("ann", "failed"), ("ann", "ok")]
