"""Calls in progress on the dashboard, against a real redis-server fed by the capture
shell (packets of generated calls, as a live source gives them) and a real writer: the
live list and its counters, the events stream (snapshot, resume with Last-Event-ID), live
listening, and a user limited to a number prefix meeting none of the other calls in any
of them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from calltap import live
from calltap.accounts import Accounts
from calltap.catalog import Scope, user_part
from calltap.config import Config
from calltap.generate import GenOptions, generate
from calltap.serve import create_app
from calltap.worker import Worker
from capture.pcapfile import open_capture
from writer.options import WriteOptions

PW = "a long enough password"


def _events(lines: Iterator[str], until: Any, limit: float = 10.0) -> list[tuple[str, str,
                                                                                   Any]]:
    """(id, event, data) from an SSE stream until ``until(events)`` holds."""
    got: list[tuple[str, str, Any]] = []
    eid = kind = ""
    deadline = time.monotonic() + limit
    for line in lines:
        if line.startswith("id: "):
            eid = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            got.append((eid, kind, json.loads(line[6:])))
            eid = kind = ""
            if until(got):
                return got
        assert time.monotonic() < deadline, f"no end in sight: {[g[1] for g in got]}"
    return got


def test_live_list_events_listening_and_scope(
        redis_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, _proc = redis_url
    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=7, duration=6.0, varied=True, seed=9))
    packets = list(open_capture(str(pcap)))
    cut = packets[0][0] + 4 * 10**9  # four seconds in: every call is up
    spool = tmp_path / "spool"
    cap = live.LiveCapture(Config(), url, str(spool), "test", background=False)
    cap.recorder.feed([p for p in packets if p[0] < cut])
    cap._events()  # noqa: SLF001 - what the capture loop does after each batch
    cap.spool.flush_all()
    cap.save_changed()
    cap.link.flush()

    out = tmp_path / "out"
    out.mkdir()
    acc = Accounts(str(tmp_path / "access.sqlite"))
    acc.add_user("root", PW, "admin", Scope(), "t")
    acc.add_user("uk", PW, "listener", Scope(prefixes=("+44",)), "t")
    app = create_app(str(out), acc, loopback=False, redis_url=url,
                     spool_dir=str(spool))
    root = TestClient(app, headers={"Authorization": "Bearer " + acc.new_token(
        "root", ["read", "audio"], 3600, time.time(), "t")})
    uk = TestClient(app, headers={"Authorization": "Bearer " + acc.new_token(
        "uk", ["read", "audio"], 3600, time.time(), "t")})

    every = root.get("/api/live").json()["calls"]
    assert len(every) == 7
    for c in every:
        assert c["status"] == "answered" and c["codec"] and min(c["packets"]) > 100
    mine = {c["tag"] for c in every if user_part(c["caller"]).startswith("+44")
            or user_part(c["callee"]).startswith("+44")}
    others = {c["tag"] for c in every} - mine
    assert mine and others
    assert {c["tag"] for c in uk.get("/api/live").json()["calls"]} == mine

    # listening: the WAV header, then audio; another's call does not exist for uk
    for tag in others:
        assert uk.get(f"/api/live/{tag}/audio").status_code == 404
    with uk.stream("GET", f"/api/live/{sorted(mine)[0]}/audio?listen=t1") as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        first = next(r.iter_bytes())
        assert first[:4] == b"RIFF" and len(first) > 44 + 8000  # over a second of audio
    pos = uk.get(f"/api/live/{sorted(mine)[0]}/position?listen=t1").json()
    assert pos["rate"] == 8000 and pos["first_ns"] < cut
    heard = [(r["user"], r["action"], r["target"].split()[0]) for r in acc.audit_rows()]
    assert heard == [("uk", "listen-live", sorted(mine)[0])]  # the 404s above: no audio

    # events: the snapshot, then the calls ending and being written; uk sees only hers
    with uk.stream("GET", "/api/live/events") as r:
        lines = r.iter_lines()
        got = _events(lines, lambda g: g[-1][1] == "snapshot")
        assert {c["tag"] for c in got[0][2]["calls"]} == mine
        cap.recorder.feed([p for p in packets if p[0] >= cut])
        cap.finish_live()
        w = Worker(url, str(out), WriteOptions(durable=False), name="w1")
        w.ensure_group()
        while (job := w.next_job()) is not None:
            w.handle(*job)
        got = _events(lines, lambda g: sum(e[1] == "recording-ready" for e in g) == len(mine))
    seen = json.dumps(got)
    assert not any(t in seen for t in others)
    ready = [e for e in got if e[1] == "recording-ready"]
    assert {e[2]["tag"] for e in ready} == mine
    assert all(uk.get(f"/api/calls/{e[2]['id']}").status_code == 200 for e in ready)
    ended = [e for e in got if e[1] == "call-ended"]
    assert {e[2]["tag"] for e in ended} == mine

    # a reconnect resumes after the last event it saw, and only with hers
    with uk.stream("GET", "/api/live/events",
                   headers={"Last-Event-ID": ended[0][0]}) as r:
        again = _events(r.iter_lines(),
                        lambda g: sum(e[1] == "recording-ready" for e in g) == len(mine))
    assert again[0][0] > ended[0][0] and again[0][1] != "snapshot"
    assert not any(t in json.dumps(again) for t in others)
    everyone = root.get("/api/live").json()["calls"]
    assert everyone == []
    assert root.get("/api/live/status").json() == {"event_streams": 0, "listeners": 0}


def test_without_redis_there_is_no_live_list(tmp_path: Path) -> None:
    c = TestClient(create_app(str(tmp_path)))
    assert c.get("/api/me").json()["live"] is False
    r = c.get("/api/live")
    assert r.status_code == 404 and "--redis" in r.json()["detail"]


def test_a_call_not_yet_spooled_renders_nothing_yet(tmp_path: Path) -> None:
    """Listening from the INVITE on: no spool file yet is no audio yet, not the end."""
    from calltap.listen import render_so_far
    from correlate.call import Call
    from writer.options import WriteOptions

    rate, start, pcm = render_so_far(Call("k", "c", 0), str(tmp_path / "none.spool"),
                                     WriteOptions())
    assert (rate, start, len(pcm)) == (0, 0, 0)
