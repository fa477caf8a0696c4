"""The live page in Debian's chromium, with `calltap run --serve` recording a real SIPp call
on loopback: the call shows within 2 s of its INVITE, its counters move, listening plays
it under 4 s behind real time while it is up, closing the page stops the server's work,
and the call moves to the recorded list within 2 s of its recording being ready.

Needs root (live capture), sipp, redis-server and chromium; skips with the reason
otherwise."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calltap.generate import write_rtp_pcap
from tests.helpers import ROOT, capture_started, kill_all, wait_for_log
from tests.test_e2e_dashboard import ARGS, CHROMIUM
from tests.test_e2e_kamailio import _speech
from tests.test_e2e_live import PY, stop

SIPP = ROOT / "pcaps" / "sipp"
BASE = 9300  # SIP 9300/9301, media 9400-9700: a range no other test uses
BPF = f"udp and (port {BASE} or port {BASE + 1} or portrange {BASE + 100}-{BASE + 400})"
CALL_S = 16


def _need() -> None:
    if os.geteuid() != 0:
        pytest.skip("live capture needs root")
    for tool in ("sipp", "redis-server"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (.ci/setup installs it)")
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (.ci/setup installs it)")
    pytest.importorskip("playwright.sync_api")


def _scenarios(work: Path) -> None:
    """SIPp's speech three times over (one stream, timestamps running on), and a caller
    that hangs up after CALL_S seconds."""
    for who, ssrc in (("caller", 0x11110000), ("callee", 0x22220000)):
        pcm = np.tile(_speech(SIPP / f"{who}-speech.pcap").astype(np.int16), 3)
        write_rtp_pcap(str(work / f"{who}-speech.pcap"), pcm, "PCMU", ssrc=ssrc, seed=2)
    uac = (SIPP / "uac.xml").read_text().replace('<pause milliseconds="6500"/>',
                                                 f'<pause milliseconds="{CALL_S * 1000}"/>')
    (work / "uac.xml").write_text(uac)
    shutil.copy(SIPP / "uas.xml", work / "uas.xml")


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    _need()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        run = subprocess.Popen([*PY, "run", "--interface", "lo", "--out", str(out), "--filter",
                                BPF, "--serve", f"127.0.0.1:{port}"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=err)
    wait_for_log(log, run, capture_started)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url + "/api/live", timeout=1).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "the appliance's dashboard did not start"
            time.sleep(0.2)
    work = tmp_path / "sipp"
    work.mkdir()
    _scenarios(work)
    yield url, out, work
    stop(run)


_SIPP: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_sipp_left() -> Iterator[None]:
    """A failed test's SIPp must not hold its ports into the next test."""
    yield
    kill_all(_SIPP)
    _SIPP.clear()


def _sipp(work: Path) -> list[subprocess.Popen[bytes]]:
    uas = subprocess.Popen(["sipp", "-sf", "uas.xml", "-i", "127.0.0.1", "-p", str(BASE),
                            "-mi", "127.0.0.1", "-mp", str(BASE + 100), "-m", "1", "-nostdin"],
                           cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    uac = subprocess.Popen(["sipp", "-sf", "uac.xml", "-i", "127.0.0.1", "-p", str(BASE + 1),
                            "-mi", "127.0.0.1", "-mp", str(BASE + 200), "-s", "bob",
                            f"127.0.0.1:{BASE}", "-m", "1", "-nostdin"],
                           cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _SIPP.extend((uas, uac))
    return [uas, uac]


def _live_page(pw: Any, url: str) -> tuple[Any, Any]:
    """chromium with the live page open and its first snapshot drawn."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page()
    page.goto(url + "/live")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    return browser, page


def _status(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/api/live/status", timeout=2) as r:
        data: dict[str, int] = json.load(r)
        return data


def test_live_page_lists_counts_plays_and_hands_over(appliance: tuple[str, Path, Path]
                                                     ) -> None:
    from playwright.sync_api import sync_playwright

    url, out, work = appliance
    ready_at: list[float] = []

    def watch_index() -> None:  # when the writer's index line lands
        deadline = time.monotonic() + CALL_S + 30
        while time.monotonic() < deadline:
            p = out / "index.jsonl"
            if p.exists() and p.read_text().strip():
                ready_at.append(time.monotonic())
                return
            time.sleep(0.02)

    with sync_playwright() as pw:
        browser, page = _live_page(pw, url)
        procs = _sipp(work)
        invite = time.monotonic()  # the UAC has just started: its INVITE is out
        row = page.wait_for_selector("#live tbody tr[data-tag]", timeout=5000)
        shown = time.monotonic() - invite
        assert shown < 2.0, f"the call showed {shown:.2f} s after its INVITE"
        watcher = threading.Thread(target=watch_index, daemon=True)
        watcher.start()

        # the counters move
        first = row.query_selector("td.packets").inner_text()
        time.sleep(2.2)
        second = row.query_selector("td.packets").inner_text()
        a = [int(x) for x in first.split(" / ")]
        b = [int(x) for x in second.split(" / ")]
        assert b[0] > a[0] and b[1] > a[1], (first, second)

        # listening: the audio plays on while the call is up, under 4 s behind it
        row.query_selector("button.listen").click()
        played = "Number(document.body.dataset.played || 0)"
        element = "document.getElementById('live-audio').currentTime"
        page.wait_for_function(f"{played} > 1", timeout=10000)
        p0, e0 = page.evaluate(played), page.evaluate(element)
        time.sleep(3.0)
        p1, e1 = page.evaluate(played), page.evaluate(element)
        assert p1 - p0 > 2.0, f"{p1 - p0:.2f} s of the call played in 3 s"
        assert e1 - e0 > 2.0, f"the audio element moved {e1 - e0:.2f} s in 3 s"
        behind = float(page.evaluate("document.body.dataset.behind"))
        still_up = page.evaluate("document.querySelector('#live tbody tr[data-tag]') !== null")
        assert still_up and 0 < behind < 4.0, f"{behind:.2f} s behind the call"
        assert _status(url)["listeners"] == 1

        # the call ends, is written, and moves to the recorded list
        page.wait_for_selector("#recorded tbody tr[data-id]", timeout=(CALL_S + 30) * 1000)
        moved = time.monotonic()
        watcher.join(5)
        assert ready_at, "no recording was written"
        late = moved - ready_at[0]
        assert late < 2.0, f"the call moved {late:.2f} s after its recording was ready"
        print(f"measured: shown {shown:.2f} s after the INVITE, {behind:.2f} s behind the "
              f"call, moved {late:.2f} s after its recording was ready")
        assert page.query_selector("#live tbody tr[data-tag]") is None
        for p in procs:
            p.wait(30)

        # closing the page ends its event stream on the server
        assert _status(url)["event_streams"] == 1
        page.close()
        deadline = time.monotonic() + 5
        while _status(url)["event_streams"] or _status(url)["listeners"]:
            assert time.monotonic() < deadline, _status(url)
            time.sleep(0.1)
        browser.close()


def test_listening_stops_when_the_page_closes(appliance: tuple[str, Path, Path]) -> None:
    from playwright.sync_api import sync_playwright

    url, _out, work = appliance
    with sync_playwright() as pw:
        browser, page = _live_page(pw, url)
        procs = _sipp(work)
        page.wait_for_selector("#live tbody tr[data-tag] button.listen", timeout=5000).click()
        page.wait_for_function("Number(document.body.dataset.played || 0) > 0.5",
                               timeout=10000)
        assert _status(url) == {"event_streams": 1, "listeners": 1}
        page.close()
        deadline = time.monotonic() + 3
        while _status(url) != {"event_streams": 0, "listeners": 0}:
            assert time.monotonic() < deadline, _status(url)
            time.sleep(0.1)
        browser.close()
        for p in procs:
            p.kill()
            p.wait()
