"""Several probes on one Redis (real SIPp traffic on loopback, real capture processes, a
redis-server and a writer): a probe killed with -9 mid-call and restarted takes up its
own calls only, and every call of every probe is recorded once, with its audio."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from correlate.keys import Keys
from tests.helpers import ROOT, capture_started, kill_all, load_index, read_wav, wait_for_log
from tests.test_e2e_live import PY, Redis, Sipp, _need


def _capture(url: str, name: str, sipp: Sipp, spool: Path) -> subprocess.Popen[bytes]:
    """A capture process, once it has lo open (its log, beside its spool, is appended to
    across restarts)."""
    log = spool.with_name(spool.name + ".log")
    starts = sum(map(capture_started, log.read_text().splitlines())) if log.exists() else 0
    with log.open("ab") as err:
        p = subprocess.Popen([*PY, "capture", "--interface", "lo", "--redis", url,
                              "--spool", str(spool), "--filter", sipp.bpf, "--probe", name],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    wait_for_log(log, p, capture_started, starts + 1)
    return p


KEYS = Keys()


def _live_call_ids(r: Any, probe: str) -> list[str]:
    ids = []
    for k in KEYS.shards:
        for tag in r.zrange(KEYS.live(probe, k), 0, -1):
            ids.append(json.loads(r.get(KEYS.call(probe, tag.decode())))["call_id"])
    return ids


def test_a_probe_killed_mid_call_takes_up_only_its_own_calls(tmp_path: Path) -> None:
    _need()
    redis = Redis(tmp_path)
    a = Sipp(13100, tmp_path)
    b = Sipp(13500, tmp_path)
    out = tmp_path / "out"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen([*PY, "writer", "--redis", redis.url, "--out", str(out)],
                                      cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        cap_a = _capture(redis.url, "probe-a", a, tmp_path / "spool-a")
        procs.append(cap_a)
        cap_b = _capture(redis.url, "probe-b", b, tmp_path / "spool-b")
        procs.append(cap_b)
        a.start(calls=1)
        b.start(calls=1)
        time.sleep(2.5)
        r = redis.client()
        before = {p: _live_call_ids(r, p) for p in ("probe-a", "probe-b")}
        assert [len(v) for v in before.values()] == [1, 1], before
        cap_a.kill()  # -9, mid-call
        cap_a.wait()
        time.sleep(0.5)
        cap_a = _capture(redis.url, "probe-a", a, tmp_path / "spool-a")
        procs.append(cap_a)
        time.sleep(2.0)
        # the restarted probe holds its own call again, and nothing of the other's
        after = {p: _live_call_ids(r, p) for p in ("probe-a", "probe-b")}
        assert after == before, (before, after)
        a.wait()
        b.wait()
        deadline = time.monotonic() + 20
        while len(load_index(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        for p in (cap_a, cap_b):
            p.send_signal(signal.SIGTERM)
            p.wait(15)
        time.sleep(1.0)
        index = load_index(out)
        assert sorted(e["call_id"] for e in index) == sorted(
            before["probe-a"] + before["probe-b"])  # each call once
        for e in index:
            audio, _rate = read_wav(out / e["audio"])
            assert audio[:, 0].any() and audio[:, 1].any(), e["call_id"]
        for k in KEYS.shards:  # nothing parked, no job left, no call left live
            assert not r.exists(KEYS.parked(k)) and r.xlen(KEYS.jobs(k)) == 0
            assert not r.zcard(KEYS.live("probe-a", k)) and not r.zcard(KEYS.live("probe-b", k))
    finally:
        kill_all(procs)
        a.stop()
        b.stop()
        redis.stop()
