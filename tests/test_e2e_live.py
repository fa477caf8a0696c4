"""The appliance live: real SIPp calls on loopback, a real redis-server, real process kills.

Needs root (live capture), sipp, tcpdump and redis-server; skips with the reason otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from correlate.keys import Keys
from tests.helpers import (
    ROOT,
    capture_started,
    load_index,
    load_summary,
    read_wav,
    tcpdump_listening,
    wait_for_log,
)

PY = [sys.executable, "-m", "calltap.cli"]
SCENARIOS = ROOT / "pcaps" / "sipp"
_PORT_RANGES = itertools.count()
BPF = "udp and (port {sip} or port {sip2} or portrange {m}-{m2})"


def _need() -> None:
    if os.geteuid() != 0:
        pytest.skip("live capture needs root")
    for tool in ("sipp", "tcpdump", "redis-server"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (.ci/setup installs it)")


class Sipp:
    """A SIPp UAS and UAC streaming the project's speech captures: on loopback, or the UAC
    at ``uac_ip`` and the UAS at ``uas_ip`` in network namespace ``uas_ns``."""

    def __init__(self, base: int, workdir: Path, uac_ip: str = "127.0.0.1",
                 uas_ip: str = "127.0.0.1", uas_ns: str = "") -> None:
        self.workdir = workdir  # SIPp writes its logs into its working directory
        self.uac_ip, self.uas_ip = uac_ip, uas_ip
        self.uas_in = ["ip", "netns", "exec", uas_ns] if uas_ns else []
        self.uas_port, self.uac_port = base, base + 1
        self.uas_media, self.uac_media = base + 100, base + 200
        self.bpf = BPF.format(sip=base, sip2=base + 1, m=base + 100, m2=base + 300)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, calls: int, rate_ms: int = 1000, limit: int = 1
              ) -> subprocess.Popen[bytes]:
        """``calls`` calls, one every ``rate_ms``, at most ``limit`` at once (SIPp's UAS
        gives every call the same media address; see the README on shared addresses)."""
        uas = subprocess.Popen(
            [*self.uas_in, "sipp", "-sf", str(SCENARIOS / "uas.xml"), "-i", self.uas_ip, "-p",
             str(self.uas_port), "-mi", self.uas_ip, "-mp", str(self.uas_media), "-m",
             str(calls), "-nostdin"],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        uac = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / "uac.xml"), "-i", self.uac_ip, "-p",
             str(self.uac_port), "-mi", self.uac_ip, "-mp", str(self.uac_media), "-s", "bob",
             f"{self.uas_ip}:{self.uas_port}", "-m", str(calls), "-l", str(limit), "-r", "1",
             "-rp", str(rate_ms), "-nostdin"],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs += [uas, uac]
        return uac

    def wait(self, timeout: float = 30) -> None:
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def sipp_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipp]:
    _need()
    # a port range of its own per test, so a straggler of one test never lands in the next
    s = Sipp(5100 + 400 * (next(_PORT_RANGES) % 20), tmp_path_factory.mktemp("sipp"))
    yield s
    s.stop()


class Redis:
    def __init__(self, where: Path) -> None:
        self.sock = where / "redis.sock"
        self.url = f"unix://{self.sock}"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.sock), "--dir", str(where),
             "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    _need()
    r = Redis(tmp_path)
    yield r
    r.stop()


def tcpdump(bpf: str, path: Path, interface: str = "lo") -> subprocess.Popen[bytes]:
    """tcpdump writing ``path``, once it has the interface open."""
    log = path.with_name(path.name + ".log")
    with log.open("wb") as err:
        p = subprocess.Popen(["tcpdump", "-i", interface, "-U", "-s", "0", "-w", str(path),
                              bpf], stdout=subprocess.DEVNULL, stderr=err)
    wait_for_log(log, p, tcpdump_listening)
    return p


_RUNNING: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_appliance_left() -> Iterator[None]:
    """A test that fails before it stops its appliance must not leave it capturing."""
    yield
    while _RUNNING:
        p = _RUNNING.pop()
        if p.poll() is None:
            stop(p)


def appliance(out: Path, bpf: str, *extra: str) -> subprocess.Popen[bytes]:
    """``calltap run`` on lo, once its capture has the interface open."""
    log = out.with_name(out.name + "-run.log")
    with log.open("wb") as err:
        p = subprocess.Popen([*PY, "run", "--interface", "lo", "--out", str(out), "--filter",
                              bpf, *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    _RUNNING.append(p)
    wait_for_log(log, p, capture_started)
    return p


def stop(p: subprocess.Popen[bytes]) -> float:
    """SIGTERM a process; the seconds it took to exit."""
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.wait(20)
    return time.monotonic() - t0


def recordings(out: Path) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    got = {}
    for e in load_index(out):
        audio, _rate = read_wav(out / e["audio"])
        got[e["call_id"]] = (e, audio)
    return got


def import_of(pcap: Path, out: Path) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    subprocess.run([*PY, "import", "--no-progress", "--out", str(out), str(pcap)], cwd=ROOT,
                   check=True, capture_output=True)
    return recordings(out)


def test_live_recordings_equal_the_import_of_a_tcpdump_capture(sipp_base: Sipp,
                                                               tmp_path: Path) -> None:
    td = tcpdump(sipp_base.bpf, tmp_path / "cap.pcap")
    run = appliance(tmp_path / "live", sipp_base.bpf)
    sipp_base.start(calls=2)
    sipp_base.wait()
    # each recording is searchable within a second of its index line
    from calltap.catalog import SqliteCatalog, call_key

    lag: dict[str, float] = {}
    deadline = time.monotonic() + 15
    while len(lag) < 2 and time.monotonic() < deadline:
        for e in load_index(tmp_path / "live"):
            if e["call_id"] in lag:
                continue
            seen = time.monotonic()
            while time.monotonic() - seen < 2.0:
                cat = SqliteCatalog.beside(str(tmp_path / "live"), readonly=True)
                found = cat.get(call_key(e))
                cat.close()
                if found is not None:
                    break
                time.sleep(0.05)
            lag[e["call_id"]] = time.monotonic() - seen
        time.sleep(0.05)
    assert len(lag) == 2 and max(lag.values()) < 1.0, lag
    time.sleep(1.0)
    took = stop(run)
    td.send_signal(signal.SIGINT)
    td.wait(10)
    live, imported = recordings(tmp_path / "live"), import_of(tmp_path / "cap.pcap",
                                                              tmp_path / "imp")
    assert len(live) == 2 and set(live) == set(imported)
    for cid, (e, audio) in live.items():
        assert e["status"] == "completed"
        other = imported[cid][1]
        differ = np.flatnonzero((audio != other).any(axis=1)) if audio.shape == other.shape \
            else np.array([-1])
        assert not len(differ), (cid, audio.shape, other.shape, differ[:5].tolist(),
                                 len(differ), e["packets"], imported[cid][0]["packets"])
        assert audio[:, 0].any() and audio[:, 1].any()
        assert e["packets"] == imported[cid][0]["packets"]
    assert took < 5.0


_STEM = re.compile(r"\d{8}T\d{6}\.\d{6}Z")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def same(v: Any) -> Any:
    """``v`` with capture times, and the file names made from them, replaced by
    placeholders, and fractions rounded; the least-squares clock drift, which a microsecond
    moves by a few tenths of a ppm, left out."""
    if isinstance(v, dict):
        return {k: "<ns>" if k.endswith(("_ns", "_ppm")) else same(x) for k, x in v.items()}
    if isinstance(v, list):
        return [same(x) for x in v]
    if isinstance(v, str):
        return _TIME.sub("<time>", _STEM.sub("<stem>", v))
    if isinstance(v, float):
        return round(v, 2)
    return v


def close(a: Any, b: Any, path: str = "") -> bool:
    """Equal, but for timing figures (jitter, delta, skew in ms), which move by the tens of
    microseconds two capture sockets stamp one packet apart under load."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], f"{path}.{k}") for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, path) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and "_ms" in path:
        return abs(a - b) <= 0.1
    return bool(a == b)


_ID = re.compile(r"[A-Za-z0-9+/]{22}==")  # RFC 7865 identifiers, hashed from capture times
_DECIMAL = re.compile(r'"(\d+\.\d+)"')


_MS_ATTR = re.compile(r'([a-z-]*ms)="(\d+\.\d+)"')


def same_xml(text: str) -> str:
    """A metadata document with times, identifiers and fractions made comparable; timing
    figures in ms (jitter) left out as ``close`` leaves them, checked in the summaries
    within 0.1 ms (two sockets stamp one packet tens of microseconds apart)."""
    text = _MS_ATTR.sub(lambda m: f'{m.group(1)}="<ms>"', _ID.sub("<id>", same(text)))
    return _DECIMAL.sub(lambda m: f'"{float(m.group(1)):.2f}"', text)


LIVE_POLICY = """\
[identity]
caller = ["P-Asserted-Identity", "From"]
callee = ["To"]
extra_headers = ["X-Queue"]

[[rule]]
name = "queue one"
header = { "X-Queue" = "q1" }
format = "flac"
layout = "split"
group = "one"

[[rule]]
name = "queue two"
header = { "X-Queue" = "q2" }
format = "mp3"
layout = "mono"
group = "two"
"""


def test_live_equals_import_under_a_policy(sipp_base: Sipp, tmp_path: Path) -> None:
    """Rules that give each call its own format, layout, group, caller identity and kept
    header: the appliance's writers (which have no policy) write every file exactly as
    ``calltap import --policy`` of a simultaneous capture does."""
    import soundfile

    policy = tmp_path / "policy.toml"
    policy.write_text(LIVE_POLICY)
    td = tcpdump(sipp_base.bpf, tmp_path / "cap.pcap")
    run = appliance(tmp_path / "live", sipp_base.bpf, "--policy", str(policy))
    sipp_base.start(calls=2)
    sipp_base.wait()
    time.sleep(3.0)  # the calls' linger, and the writers
    stop(run)
    td.send_signal(signal.SIGINT)
    td.wait(10)
    imp = tmp_path / "imp"
    subprocess.run([*PY, "import", "--no-progress", "--out", str(imp), "--policy", str(policy),
                    str(tmp_path / "cap.pcap")], cwd=ROOT, check=True, capture_output=True)
    live = {e["call_id"]: e for e in load_index(tmp_path / "live")}
    imported = {e["call_id"]: e for e in load_index(imp)}
    assert len(live) == 2 and set(live) == set(imported)
    seen = set()
    for cid, e in live.items():
        # tcpdump's socket and the appliance's stamp a packet separately (a microsecond
        # apart at times): times and the file names made from them are compared as shapes
        assert same(e) == same(imported[cid]), cid  # parties, rule, group, format, counts
        s = load_summary(tmp_path / "live", e)
        t = load_summary(imp, imported[cid])
        assert same(s) == same(t) or close(same(s), same(t)), cid
        queue = s["call"]["headers"]["x-queue"][0]
        seen.add((queue, e["policy_rule"], s["audio_format"], s["layout"]))
        assert e["caller"].startswith("sip:+4420700"), e["caller"]  # P-Asserted-Identity
        for f, g in zip(e["audio_files"], imported[cid]["audio_files"], strict=True):
            a, rate = soundfile.read(str(tmp_path / "live" / f), dtype="int16")
            b, rate_b = soundfile.read(str(imp / g), dtype="int16")
            assert rate == rate_b and np.array_equal(a, b), f
            assert np.abs(a).max() > 1000  # speech, not silence
        xml = (tmp_path / "live" / e["metadata"]).read_text()
        assert same_xml(xml) == same_xml((imp / imported[cid]["metadata"]).read_text())
    assert seen == {("q1", "queue one", "flac", "split"), ("q2", "queue two", "mp3", "mono")}


def test_sigterm_during_calls_records_them_as_interrupted(sipp_base: Sipp,
                                                          tmp_path: Path) -> None:
    run = appliance(tmp_path / "live", sipp_base.bpf)
    sipp_base.start(calls=2, rate_ms=500, limit=2)
    time.sleep(3.0)  # both calls are talking
    took = stop(run)
    print(f"SIGTERM to exit: {took:.2f} s")
    assert took < 5.0
    got = recordings(tmp_path / "live")
    assert len(got) == 2
    for e, audio in got.values():
        assert e["status"] == "interrupted" and e["end_reason"] == "interrupted"
        assert audio[:, 0].any() and audio[:, 1].any()


def _capture_pid(parent: int) -> int:
    """The capture process ``parent`` (a ``calltap run``) started."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent and b"calltap.cli" in cmd and b"capture" in cmd:
                return int(pid)
    raise AssertionError("no capture process")


def _capturing(pid: int) -> bool:
    """Whether process ``pid`` has a packet socket open (libpcap is reading the interface)."""
    try:
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        lines = Path("/proc/net/packet").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f"socket:[{line.split()[-1]}]" in held for line in lines)


def test_kill_9_of_the_capture_leaves_a_gap_no_longer_than_the_outage(
        sipp_base: Sipp, tmp_path: Path) -> None:
    td = tcpdump(sipp_base.bpf, tmp_path / "cap.pcap")
    run = appliance(tmp_path / "live", sipp_base.bpf)
    sipp_base.start(calls=1)
    time.sleep(3.5)  # mid-call
    pid = _capture_pid(run.pid)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while True:  # the supervisor starts a new capture process
        try:
            new = _capture_pid(run.pid)
        except AssertionError:
            new = 0
        if new and new != pid:
            break
        time.sleep(0.05)
    deadline = time.monotonic() + 20
    while not _capturing(new):  # the outage lasts until it reads the interface again
        assert time.monotonic() < deadline, "the new capture process never opened lo"
        time.sleep(0.02)
    outage = time.monotonic() - killed
    sipp_base.wait()
    time.sleep(3.0)
    stop(run)
    td.send_signal(signal.SIGINT)
    td.wait(10)
    live, imported = recordings(tmp_path / "live"), import_of(tmp_path / "cap.pcap",
                                                              tmp_path / "imp")
    assert len(live) == 1 and set(live) == set(imported)  # not lost, not split in two
    (cid,) = live
    e, audio = live[cid]
    ref = imported[cid][1]
    assert e["status"] == "completed" and audio.shape == ref.shape
    differ = np.flatnonzero((audio != ref).any(axis=1))
    assert len(differ)  # the outage is missing
    gap_s = (differ[-1] - differ[0] + 1) / 8000
    # the samples that differ: the outage, plus up to FLUSH_S of spool the crash lost
    print(f"capture outage {outage:.2f} s, recording gap {gap_s:.2f} s")
    assert gap_s <= outage + 0.5, (gap_s, outage)
    assert not audio[audio != ref].any()  # silence in the gap, never other audio


def test_stopping_redis_for_ten_seconds_loses_no_call(sipp_base: Sipp, redis_server: Redis,
                                                      tmp_path: Path) -> None:
    run = appliance(tmp_path / "live", sipp_base.bpf, "--redis", redis_server.url)
    sipp_base.start(calls=3, rate_ms=2500)
    time.sleep(1.5)
    redis_server.proc.send_signal(signal.SIGSTOP)
    time.sleep(10.0)
    redis_server.proc.send_signal(signal.SIGCONT)
    sipp_base.wait(60)
    deadline = time.monotonic() + 30
    while len(load_index(tmp_path / "live")) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    stop(run)
    got = recordings(tmp_path / "live")
    assert len(got) == 3
    assert all(e["status"] == "completed" and a[:, 0].any() and a[:, 1].any()
               for e, a in got.values())


def test_a_writer_killed_mid_job_is_replaced(redis_server: Redis, tmp_path: Path) -> None:
    from calltap.config import Config
    from calltap.generate import GenOptions, generate
    from calltap.live import LiveCapture

    pcap = tmp_path / "long.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=240.0, seed=3, codecs=("PCMU",)))

    class FileSource:
        """The capture path fed from a file instead of an interface."""

        def __init__(self, cap: LiveCapture) -> None:
            from capture.pcapfile import open_capture

            self.it = iter(open_capture(str(pcap)))
            self.cap = cap

        def read(self) -> list[tuple[int, int, bytes]]:
            batch = [p for _, p in zip(range(512), self.it, strict=False)]
            if not batch:
                self.cap.stopping = True
            return batch

    cap = LiveCapture(Config(), redis_server.url, str(tmp_path / "spool"), "file")
    cap.run(FileSource(cap))  # type: ignore[arg-type]
    assert cap.jobs_sent == 1
    r = redis_server.client()
    out = tmp_path / "out"
    # MP3: the slowest format to write, so the kill lands mid-job
    slow = dict(os.environ, CALLTAP_AUDIO_FORMAT="mp3")
    a = subprocess.Popen([*PY, "writer", "--redis", redis_server.url, "--out", str(out),
                          "--claim-idle-ms", "500"], cwd=ROOT, stdout=subprocess.DEVNULL,
                         env=slow)
    deadline = time.monotonic() + 20
    keys = Keys()
    jobs = [keys.jobs(k) for k in keys.shards]

    def pending() -> int:
        return sum(r.xpending(j, "writers")["pending"] for j in jobs
                   if r.exists(j) and r.xinfo_groups(j))

    while not pending():
        assert time.monotonic() < deadline and a.poll() is None
        time.sleep(0.005)
    a.kill()  # mid-job: the 4-minute call takes seconds to write as MP3
    a.wait()
    visible = [p.name for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert visible == []  # nothing under a final name, no index line
    b = subprocess.Popen([*PY, "writer", "--redis", redis_server.url, "--out", str(out),
                          "--claim-idle-ms", "500"], cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (out / "index.jsonl").exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    b.terminate()
    b.wait(10)
    (e,) = load_index(out)  # written once
    summary = load_summary(out, e)
    assert summary["call"]["status"] == "completed" and e["audio"]
    assert [p for p in out.rglob(".*.part")] == []
    ready = [f for k in keys.shards for _id, f in r.xrange(keys.events(k))
             if f[b"type"] == b"recording-ready"]
    (k,) = [k for k in keys.shards if r.zcard(keys.index(k))]
    assert r.zcard(keys.index(k)) == 1 and len(ready) == 1
    assert pending() == 0 and sum(r.xlen(j) for j in jobs) == 0
    assert r.zrange(keys.index(k), 0, 0)[0].decode() == os.path.basename(
        e["summary"]).removesuffix(".json")


def test_metrics_report_kernel_drops_under_overload(redis_server: Redis,
                                                   tmp_path: Path) -> None:
    """tcpreplay at top speed into a veth pair whose far end lives in a test namespace."""
    import urllib.request

    from calltap.generate import GenOptions, generate

    if shutil.which("tcpreplay") is None or shutil.which("ip") is None:
        pytest.skip("tcpreplay and ip (iproute2) are needed (.ci/setup installs them)")
    pcap = tmp_path / "flood.pcap"
    generate(str(pcap), GenOptions(calls=60, duration=20.0, seed=2, codecs=("PCMU",)))
    ns, near, far = f"ctns{os.getpid()}", f"ctv{os.getpid() % 10000}a", \
        f"ctv{os.getpid() % 10000}b"
    sh = ["ip", "netns", "exec", ns]

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    port = 19_000 + os.getpid() % 1000
    cap = None
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", near, "type", "veth", "peer", "name", far)
        run("ip", "link", "set", far, "netns", ns)
        run("ip", "link", "set", near, "up")
        run(*sh, "ip", "link", "set", far, "up")
        log = tmp_path / "capture.log"
        with log.open("wb") as err:
            cap = subprocess.Popen([*PY, "capture", "--interface", near, "--redis",
                                    redis_server.url, "--spool", str(tmp_path / "spool"),
                                    "--buffer-mb", "1", "--metrics-port", str(port)], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=err)
        wait_for_log(log, cap, capture_started)
        run(*sh, "tcpreplay", "-i", far, "--topspeed", "--loop", "2", str(pcap))
        time.sleep(1.0)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        metrics = {}
        for line in text.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                metrics[name] = float(value)
        print({k: v for k, v in metrics.items() if "drops" in k or "received" in k})
        assert metrics['calltap_drops_total{reason="kernel"}'] > 0
        assert metrics["calltap_pcap_received_total"] > 0
        assert metrics['calltap_packets_total{kind="all"}'] > 0
    finally:
        if cap is not None:
            cap.terminate()
            cap.wait(20)
        subprocess.run(["ip", "link", "del", near], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_pause_and_resume_by_command(sipp_base: Sipp, redis_server: Redis,
                                     tmp_path: Path) -> None:
    """An agent desktop pauses a call in progress by its Call-ID, then resumes it."""
    run = appliance(tmp_path / "live", sipp_base.bpf, "--redis", redis_server.url)
    sipp_base.start(calls=1)
    time.sleep(2.0)
    r = redis_server.client()
    keys = Keys()
    (probe,) = [p.decode() for p in r.smembers(keys.probes)]
    (tag,) = [t.decode() for k in keys.shards for t in r.zrange(keys.live(probe, k), 0, -1)]
    call_id = json.loads(r.get(keys.call(probe, tag)))["call_id"]
    ctl = ["--redis", redis_server.url, call_id]
    subprocess.run([*PY, "pause", *ctl], cwd=ROOT, check=True)
    paused = time.monotonic()
    time.sleep(2.0)
    subprocess.run([*PY, "resume", *ctl], cwd=ROOT, check=True)
    held = time.monotonic() - paused  # the command's own start-up included
    sipp_base.wait()
    time.sleep(3.0)
    stop(run)
    ((e, audio),) = recordings(tmp_path / "live").values()
    (pause,) = load_summary(tmp_path / "live", e)["call"]["paused"]
    # each command reaches the capture within a quarter second of being sent
    assert held - 0.6 < pause["seconds"] < held + 0.3, (pause["seconds"], held)
    a, b = round(pause["offset"] * 8000), round((pause["offset"] + pause["seconds"]) * 8000)
    # the summary gives the span to the millisecond: a sample's worth of rounding each side
    assert not audio[a + 8:b - 8].any()
    assert audio[:a, 0].any() and audio[b:, 0].any()  # speech before and after


def test_sealed_live_recording(sipp_base: Sipp, tmp_path: Path) -> None:
    """With encrypt_to, neither the spool of a call in progress nor any file the writers
    leave holds its audio in plain; decrypted, the recording is the import's of a tcpdump
    capture of the same call, sample for sample."""
    from calltap.decrypt import decrypt
    from capture.pcapfile import close_capture, open_capture
    from writer.seal import new_key_pair

    new_key_pair(str(tmp_path / "enc.key"), str(tmp_path / "enc.pub"))
    cfg = tmp_path / "calltap.toml"
    cfg.write_text(f'encrypt_to = "{tmp_path / "enc.pub"}"\n')
    td = tcpdump(sipp_base.bpf, tmp_path / "cap.pcap")
    out = tmp_path / "live"
    run = appliance(out, sipp_base.bpf, "--config", str(cfg))
    sipp_base.start(calls=1)
    time.sleep(3.0)
    spool = out / ".calltap" / "spool"
    during = {p.name: p.read_bytes() for p in spool.glob("*.spool")}
    sipp_base.wait()
    time.sleep(3.0)
    stop(run)
    td.send_signal(signal.SIGINT)
    td.wait(10)
    assert during and all(during.values())  # the call was being spooled
    payloads = []
    r = open_capture(str(tmp_path / "cap.pcap"))
    for _ts, _link, frame in r:
        udp = frame[42:]
        if len(udp) >= 100 and udp[0] == 0x80:
            payloads.append(udp[12:])
    close_capture(r)
    imported = import_of(tmp_path / "cap.pcap", tmp_path / "imp")
    ((cid, (_e, ref)),) = imported.items()
    needles = [p[20:52] for p in payloads[::5]] + [
        ref[k:k + 16].tobytes() for k in range(400, len(ref), 2000) if ref[k:k + 16].any()]
    assert len(payloads) > 100 and len(needles) > 100
    for name, data in during.items():
        assert not any(n in data for n in needles), name
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert not any(n in data for n in needles), p
    rep = decrypt(str(out), str(tmp_path / "enc.key"), str(tmp_path / "plain"))
    assert rep.problems == [] and rep.calls == 1
    (e,) = load_index(out)  # the index names the plain files; decrypt restored them
    audio = read_wav(tmp_path / "plain" / e["audio"])[0]
    assert e["call_id"] == cid and audio.shape == ref.shape and (audio == ref).all()
