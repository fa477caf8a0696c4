"""Several capture processes on one interface, and two probes each seeing one side of a
call: real SIPp calls on loopback, real capture processes, a redis-server and a writer.

``calltap capture --procs 2`` joins an AF_PACKET fanout group: the kernel spreads the
flows over the two processes by a hash, so a call's SIP and RTP often reach different
ones. Its recordings must be what one process capturing the same veth at the same time
records, sample for sample. And two probes, one capturing the
caller's side and one the callee's, with ``shared_media`` on, make one recording with both
channels. Needs root; skips with the reason otherwise."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import ROOT, capture_started, kill_all, load_index, stop_all, wait_for_log
from tests.test_e2e_live import PY, Redis, Sipp, _need, import_of, recordings, tcpdump

# SIPp pairs run at once: each call's SIP and RTP flows are hashed apart by the kernel with
# even odds, so among six calls at least one is split (all six kept together: 1 in 64, and
# then a second round runs).
PAIRS = 6


def _wait_index(out: Path, n: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "index.jsonl").exists() and len(load_index(out)) >= n:
            break
        time.sleep(0.25)
    return load_index(out) if (out / "index.jsonl").exists() else []


def _same_channels(live: dict[str, Any], imported: dict[str, Any]) -> None:
    """Each channel sample for sample the other recording's, one of them allowed to sit one
    sample (125 us) earlier or later: where a call's directions were seen by two sockets
    (two probes, or two processes of a fanout group) and by one socket on the other side,
    where the directions start relative to each other follows each socket's stamps, which
    differ by microseconds, and more on a busy machine. Packet counts equal."""
    assert set(live) == set(imported), (sorted(live), sorted(imported))
    for cid, (e, audio) in live.items():
        other = imported[cid][1]
        assert abs(len(audio) - len(other)) <= 1, (cid, audio.shape, other.shape)
        for ch in (0, 1):
            a, b = np.trim_zeros(audio[:, ch], "f"), np.trim_zeros(other[:, ch], "f")
            shift = (len(audio) - len(a)) - (len(other) - len(b))  # where each begins
            n = min(len(a), len(b))
            assert abs(shift) <= 1 and abs(len(a) - len(b)) <= 1, (cid, ch, shift)
            assert (a[:n] == b[:n]).all(), (cid, ch)
            assert a.any(), (cid, ch)
        assert e["packets"] == imported[cid][0]["packets"], cid


def _parts(log: Path) -> list[int]:
    """How many parts each recording the writer made was joined from."""
    out = []
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "recording ready":
            out.append(int(rec.get("parts", 1)))
    return out


def _wait_parts(log: Path, n: int, timeout: float) -> list[int]:
    """``_parts`` once the writer has logged ``n`` recordings: it logs one after its index
    line, its catalog row and its commit, so the index alone can be read first."""
    deadline = time.monotonic() + timeout
    while len(_parts(log)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return _parts(log)


class Veth:
    """A veth pair: ``near`` here at 10.201.0.1, ``far`` at 10.201.0.2 in a network
    namespace of its own (the SIPp UAS lives there), removed by ``close``."""

    def __init__(self) -> None:
        tag = os.getpid() % 100_000
        self.ns, self.near, far = f"ctf{tag}", f"ctf{tag}a", f"ctf{tag}b"
        self.close()  # a namesake left by a killed run
        for cmd in (["ip", "netns", "add", self.ns],
                    ["ip", "link", "add", self.near, "type", "veth", "peer", "name", far],
                    ["ip", "link", "set", far, "netns", self.ns],
                    ["ip", "addr", "add", "10.201.0.1/24", "dev", self.near],
                    ["ip", "link", "set", self.near, "up"],
                    ["ip", "netns", "exec", self.ns, "ip", "addr", "add", "10.201.0.2/24",
                     "dev", far],
                    ["ip", "netns", "exec", self.ns, "ip", "link", "set", far, "up"]):
            if subprocess.run(cmd, capture_output=True, check=False).returncode:
                self.close()
                pytest.skip(f"cannot set up a veth pair: {' '.join(cmd)} failed")

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.near], capture_output=True, check=False)


def test_two_capture_processes_record_what_one_records(tmp_path: Path) -> None:
    """On one veth at once: ``capture --procs 2`` (its own Redis and writer) and one
    capture process (another Redis and writer) record the same calls, each channel sample
    for sample (see _same_channels); at least one call was split over the two processes
    and joined."""
    _need()
    if shutil.which("ip") is None:
        pytest.skip("ip (iproute2) is not installed")
    veth = Veth()
    for name in ("fan", "one"):
        (tmp_path / name).mkdir()
    redis = {name: Redis(tmp_path / name) for name in ("fan", "one")}
    wlog = tmp_path / "writer-fan.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("fan", "one"):
            procs.append(subprocess.Popen(
                [*PY, "writer", "--redis", redis[name].url, "--out", str(tmp_path / name / "out")],
                cwd=ROOT, stdout=subprocess.DEVNULL,
                stderr=wlog.open("w") if name == "fan" else subprocess.DEVNULL))
        split, rounds, calls = 0, 0, 0
        while not split and rounds < 2:
            pairs = [Sipp(14100 + 400 * k + 2400 * rounds, tmp_path, "10.201.0.1",
                          "10.201.0.2", veth.ns) for k in range(PAIRS)]
            bpf = " or ".join(f"({pair.bpf})" for pair in pairs)
            caps = []
            for name, extra in (("fan", ["--procs", "2"]), ("one", [])):
                log = tmp_path / name / f"capture-{rounds}.log"
                with log.open("wb") as err:
                    caps.append(subprocess.Popen(
                        [*PY, "capture", "--interface", veth.near, "--redis", redis[name].url,
                         "--spool", str(tmp_path / name / "spool"), "--filter", bpf, "--probe",
                         name, *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err))
                procs.append(caps[-1])
                wait_for_log(log, caps[-1], capture_started, 2 if extra else 1)
            for pair in pairs:
                pair.start(calls=1)
            for pair in pairs:
                pair.wait()
            calls += PAIRS
            for name in ("fan", "one"):
                index = _wait_index(tmp_path / name / "out", calls, 30)
                assert len(index) == calls, (name, len(index))
            for cap in caps:
                cap.send_signal(signal.SIGTERM)
                cap.wait(20)
            rounds += 1
            split = sum(1 for n in _parts(wlog) if n > 1)
        fan, one = recordings(tmp_path / "fan" / "out"), recordings(tmp_path / "one" / "out")
        _same_channels(fan, one)
        assert split >= 1, _parts(wlog)
        assert all(e["status"] == "completed" and e["end_reason"] == "bye"
                   for e in load_index(tmp_path / "fan" / "out"))
        r = redis["fan"].client()
        assert not r.keys("*:parts:*") and not any(r.zcard(f"{{calltap:s{k}}}:assembling")
                                                   for k in range(8))
    finally:
        stop_all(procs)  # SIGTERM first: a fanout parent killed -9 would leave its children
        for rd in redis.values():
            rd.stop()
        veth.close()


def test_two_probes_each_seeing_one_side_make_one_recording(tmp_path: Path) -> None:
    """Probe a captures the SIP and the RTP the caller sends; probe b the SIP and the
    RTP the callee sends: one recording, both channels, equal to the import of a capture
    of everything."""
    _need()
    redis = Redis(tmp_path)
    sipp = Sipp(16900, tmp_path)
    sip = f"udp and (port {sipp.uas_port} or port {sipp.uac_port})"
    # SIPp's UAC sends its RTP from its media port; the UAS from its own
    side_a = f"({sip}) or (udp and src portrange {sipp.uac_media}-{sipp.uac_media + 1})"
    side_b = f"({sip}) or (udp and src portrange {sipp.uas_media}-{sipp.uas_media + 1})"
    out = tmp_path / "live"
    wlog = tmp_path / "writer.log"
    cfg = tmp_path / "calltap.toml"
    cfg.write_text("shared_media = true\n")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        td = tcpdump(sipp.bpf, tmp_path / "cap.pcap")
        procs.append(subprocess.Popen([*PY, "writer", "--redis", redis.url, "--out", str(out)],
                                      cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=wlog.open("w")))
        for name, bpf in (("site-a", side_a), ("site-b", side_b)):
            log = tmp_path / f"{name}.log"
            with log.open("wb") as err:
                procs.append(subprocess.Popen(
                    [*PY, "capture", "--interface", "lo", "--redis", redis.url, "--spool",
                     str(tmp_path / name), "--filter", bpf, "--probe", name, "--config",
                     str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err))
            wait_for_log(log, procs[-1], capture_started)
        sipp.start(calls=1)
        sipp.wait()
        index = _wait_index(out, 1, 30)
        td.send_signal(signal.SIGINT)
        td.wait(10)
        assert len(load_index(out)) == 1, index
        assert _wait_parts(wlog, 1, 30) == [2]
        _same_channels(recordings(out), import_of(tmp_path / "cap.pcap", tmp_path / "imp"))
    finally:
        kill_all(procs)
        sipp.stop()
        redis.stop()
