"""The dashboard in a real browser (Debian's chromium driven by Playwright): import a
generated capture (loss, a paused span, varied parties) and real shared captures (RFC 4733
DTMF, early media), search, open a call, play, seek from the SIP ladder, check that the
waveform and the quality chart are drawn, download the recording and the SIP pcap. Saves
screenshots of the three pages (into $CALLTAP_SCREENSHOTS when set)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calltap.generate import GenOptions, generate
from tests.helpers import SHARED_PCAPS, load_index, run_import

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required"]
REAL = ("SIP_DTMF2.pcap", "nb6-telephone.pcap")


def _need() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (.ci/setup installs it)")
    pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    _need()
    import uvicorn

    from calltap.serve import create_app

    d = tmp_path_factory.mktemp("dashboard")
    pcap = d / "g.pcap"
    # the caller keys *7 at 3 s and *8 at 5 s: RFC 4733 digits that pause the recording
    generate(str(pcap), GenOptions(calls=5, duration=8.0, varied=True, loss=0.04, seed=12,
                                   pause_at=3.0, resume_at=5.0, pause_by="dtmf"))
    # and a call put on hold from 1.5 s to 2.5 s (re-INVITEs sendonly, then sendrecv)
    held = d / "hold.pcap"
    generate(str(held), GenOptions(calls=1, duration=4.0, seed=13, hold_at=1.5,
                                   unhold_at=2.5))
    policy = d / "policy.toml"
    policy.write_text('[pause]\ndtmf_pause = "*7"\ndtmf_resume = "*8"\n')
    files: list[Path] = [pcap, held]
    if SHARED_PCAPS.is_dir():
        files += [SHARED_PCAPS / n for n in REAL]
    run_import(files, d / "out", jobs=1, policy=str(policy))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(str(d / "out")), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", d / "out"
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def browser(site: tuple[str, Path]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _shots() -> Path:
    d = Path(os.environ.get("CALLTAP_SCREENSHOTS") or "/tmp/calltap-screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='1']", timeout=15000)


def test_search_by_number_and_mos(site: tuple[str, Path], browser: Any) -> None:
    url, out = site
    entries = load_index(out)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url + "/")
    _ready(page)
    assert page.locator("#calls tbody tr").count() == len(entries)
    page.screenshot(path=str(_shots() / "calls.png"), full_page=True)
    # filter by a number: only the calls with it, and the search is in the URL
    e = next(x for x in entries if "+" in x["callee"])
    number = e["callee"].split("@")[0].removeprefix("sip:")
    page.evaluate("document.body.dataset.ready = ''")
    page.fill("input[name=party]", number[-6:])
    page.click("button[type=submit]")
    _ready(page)
    rows = page.locator("#calls tbody tr")
    want = [x for x in entries if number[-6:] in x["caller"] + x["callee"]]
    assert rows.count() == len(want) >= 1
    assert "party=" in page.url
    # a MOS range
    page.goto(url + "/?mos_min=4.0&mos_max=4.3")
    _ready(page)
    in_range = [x for x in entries if x["mos"] and None not in x["mos"]
                and 4.0 <= min(x["mos"]) <= 4.3]
    assert page.locator("#calls tbody tr").count() == len(in_range)
    assert page.input_value("input[name=mos_min]") == "4.0"
    page.close()


def _open_call(page: Any, url: str, call_id: str) -> None:
    page.goto(url + "/")
    _ready(page)
    page.evaluate("document.body.dataset.ready = ''")
    page.click(f"#calls tbody tr[data-id='{call_id}']")
    _ready(page)


def test_call_page_plays_seeks_draws_and_downloads(site: tuple[str, Path], browser: Any,
                                                   tmp_path: Path) -> None:
    url, out = site
    entries = load_index(out)
    e = max((x for x in entries if x["end_reason"] == "bye"), key=lambda x: x["duration"])
    key = Path(e["summary"]).name.removesuffix(".json")
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    _open_call(page, url, key)
    assert page.url.endswith("/calls/" + key)
    # the waveform is drawn: coloured pixels in both channels' halves of the canvas
    drawn = page.evaluate("""() => {
        const c = document.getElementById('wave'), ctx = c.getContext('2d');
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        let top = 0, bottom = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) {
            ((i >> 2) / c.width < c.height / 2) ? top++ : bottom++; }
        return [top, bottom]; }""")
    assert drawn[0] > 200 and drawn[1] > 200, drawn
    # the quality chart has a MOS line per direction, with points
    lines = page.eval_on_selector_all(
        "#quality polyline.mos", "els => els.map(e => e.getAttribute('points').split(' ').length)")
    assert len(lines) == 2 and min(lines) >= 3, lines
    # play: the clock moves
    page.click("#play")
    page.wait_for_function("document.getElementById('audio').currentTime > 0.5",
                           timeout=10000)
    page.click("#play")  # pause
    # seek by clicking the BYE in the ladder: the player goes to its time
    bye = page.locator("#ladder g.msg", has_text="BYE").first
    t = float(bye.get_attribute("data-t") or "nan")
    bye.locator("rect.hit").click()  # the message's arrow
    now = page.evaluate("document.getElementById('audio').currentTime")
    duration = page.evaluate("document.getElementById('audio').duration")
    assert abs(now - min(t, duration)) < 0.05, (now, t)
    assert page.text_content("#siptext").startswith("BYE ")
    page.screenshot(path=str(_shots() / "call.png"), full_page=True)
    # downloads are the files on disk; the SIP pcap holds the call's messages
    with page.expect_download() as d:
        page.click("a.download-audio")
    wav = tmp_path / "call.wav"
    d.value.save_as(str(wav))
    assert wav.read_bytes() == (out / e["audio"]).read_bytes()
    with page.expect_download() as d:
        page.click("a.download-sip")
    sip = tmp_path / "call.sip.pcap"
    d.value.save_as(str(sip))
    assert sip.read_bytes() == (out / e["sip_pcap"]).read_bytes()
    if shutil.which("tshark"):
        r = subprocess.run(["tshark", "-r", str(sip), "-Y", "sip", "-T", "fields", "-e",
                            "sip.Call-ID", "-e", "sip.Method"], capture_output=True,
                           text=True, check=True)
        rows = [x.split("\t") for x in r.stdout.splitlines()]
        assert {c for c, _m in rows} == {e["call_id"]}
        assert {"INVITE", "ACK", "BYE"} <= {m for _c, m in rows}
    page.close()


MARK_COLOURS = {"dtmf": (0x13, 0xC2, 0xC2), "pause": (0x72, 0x2E, 0xD1),
                "early_media": (0xFA, 0xAD, 0x14), "hold": (0x8C, 0x8C, 0x8C),
                "gap": (0xD4, 0x38, 0x0D), "loss": (0xA8, 0x07, 0x1A)}


def _marked(page: Any, mark: str) -> bool:
    """The mark's colour is in the waveform's mark rows."""
    r, g, b = MARK_COLOURS[mark]
    return bool(page.evaluate(f"""() => {{
        const c = document.getElementById('wave'), d = c.getContext('2d')
            .getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4)
            if (d[i] === {r} && d[i + 1] === {g} && d[i + 2] === {b}) return true;
        return false; }}"""))


@pytest.mark.parametrize("which, marks", [
    ("gen-12-", ("dtmf", "pause", "gap", "loss")),  # *7 ... *8, and 4% loss
    ("gen-13-", ("hold",)),
    ("25672@192.168.105.110", ("dtmf",)),  # SIP_DTMF2.pcap: RFC 4733 digits
    ("", ("early_media",)),  # nb6-telephone.pcap: 183 with media before the answer
])
def test_marks_on_the_waveform(site: tuple[str, Path], browser: Any, which: str,
                               marks: tuple[str, ...]) -> None:
    url, out = site
    entries = load_index(out)
    if which:
        e = next((x for x in entries if x["call_id"].startswith(which)), None)
    else:
        e = next((x for x in entries if x["early_media"]), None)
    if e is None:
        pytest.skip(f"the shared captures ({', '.join(REAL)}) are not here")
    key = Path(e["summary"]).name.removesuffix(".json")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/calls/{key}")
    _ready(page)
    for mark in marks:
        assert _marked(page, mark), mark
    page.close()


def test_overview_page(site: tuple[str, Path], browser: Any) -> None:
    url, out = site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url + "/overview")
    _ready(page)
    assert page.locator("#hours rect").count() >= 1
    assert page.locator("#worst tbody tr").count() >= 1
    figures = page.text_content("#figures") or ""
    assert str(len(load_index(out))) in figures
    page.screenshot(path=str(_shots() / "overview.png"), full_page=True)
    page.close()
