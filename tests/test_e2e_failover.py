"""Redis that fails over, with real servers: a Cluster of six nodes (three masters, three
replicas) and a Sentinel-watched master with a replica and three sentinels. A master is
killed with -9 while SIPp calls are being recorded; every call is still recorded once,
with its audio, nothing is parked, and no command fails with CROSSSLOT."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from correlate.keys import Keys
from tests.helpers import ROOT, capture_started, load_index, read_wav, wait_for_log
from tests.test_e2e_live import PY, Sipp, _need

CALLS = 6


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


def _server(where: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    d = where / str(port)
    d.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--dir", str(d), "--save", "", "--appendonly", "no", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port)
    return p


class Servers:
    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, Servers]]:
    _need()
    s = Servers()
    ports = list(range(17000, 17006))
    try:
        for port in ports:
            s.procs[port] = _server(tmp_path / "cluster", port, "--cluster-enabled", "yes",
                                    "--cluster-config-file", f"nodes-{port}.conf",
                                    "--cluster-node-timeout", "1000")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "1",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while b"cluster_state:ok" not in subprocess.run(
                ["redis-cli", "-p", str(ports[0]), "cluster", "info"],
                capture_output=True, check=False).stdout:
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.2)
        yield f"redis-cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}", s
    finally:
        s.stop()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[str, Servers]]:
    _need()
    s = Servers()
    master, replica, sentinels = 17100, 17101, [17110, 17111, 17112]
    try:
        s.procs[master] = _server(tmp_path / "sentinel", master)
        s.procs[replica] = _server(tmp_path / "sentinel", replica, "--replicaof", "127.0.0.1",
                                   str(master))
        for port in sentinels:
            conf = tmp_path / "sentinel" / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\n"
                            f"sentinel monitor calltap 127.0.0.1 {master} 2\n"
                            "sentinel down-after-milliseconds calltap 1000\n"
                            "sentinel failover-timeout calltap 5000\n")
            s.procs[port] = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
            _wait_port(port)
        time.sleep(1.0)  # the sentinels find each other and the replica
        yield ("redis-sentinel://" + ",".join(f"127.0.0.1:{p}" for p in sentinels)
               + "/calltap"), s
    finally:
        s.stop()


def _record_through_a_failover(url: str, kill: Any, tmp_path: Path) -> None:
    sipp = Sipp(13900, tmp_path)
    out = tmp_path / "out"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([*PY, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=(logs / f"{name}.log").open("ab"))
        procs.append(p)
        return p

    try:
        start("writer", "writer", "--redis", url, "--out", str(out), "--claim-idle-ms", "3000")
        cap = start("capture", "capture", "--interface", "lo", "--redis", url, "--spool",
                    str(tmp_path / "spool"), "--filter", sipp.bpf, "--probe", "p1")
        wait_for_log(logs / "capture.log", cap, capture_started)
        sipp.start(calls=CALLS, rate_ms=1000, limit=3)
        time.sleep(4.0)
        kill()  # a master, -9, while calls are recorded and written
        sipp.wait(60)
        deadline = time.monotonic() + 40
        while len(load_index(out)) < CALLS and time.monotonic() < deadline:
            time.sleep(0.25)
        index = load_index(out)
        assert len(index) == CALLS, [e["call_id"] for e in index]
        assert len({e["call_id"] for e in index}) == CALLS  # each once
        for e in index:
            audio, _rate = read_wav(out / e["audio"])
            assert audio[:, 0].any() and audio[:, 1].any(), e["call_id"]
        from calltap.redisconn import connect

        r = connect(url, socket_timeout=5)
        keys = Keys()
        assert sum(r.xlen(keys.parked(k)) for k in keys.shards) == 0  # nothing parked
        for p in procs:
            assert p.poll() is None  # neither process gave up
        logged = "".join(f.read_text() for f in logs.iterdir())
        assert "CROSSSLOT" not in logged and "Traceback" not in logged
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        sipp.stop()


def test_a_cluster_master_killed_mid_traffic(cluster: tuple[str, Servers],
                                            tmp_path: Path) -> None:
    url, servers = cluster
    from calltap.redisconn import connect

    r = connect(url, socket_timeout=5)
    keys = Keys()
    # the master holding most of the site's shards
    owners: dict[int, int] = {}
    for k in keys.shards:
        node = r.get_node_from_key(keys.jobs(k))
        owners[node.port] = owners.get(node.port, 0) + 1
    victim = max(owners, key=lambda p: owners[p])

    def kill() -> None:
        servers.procs[victim].kill()

    _record_through_a_failover(url, kill, tmp_path)
    roles = subprocess.run(["redis-cli", "-p", "17000" if victim != 17000 else "17001",
                            "cluster", "nodes"], capture_output=True, text=True,
                           check=True).stdout
    assert f"127.0.0.1:{victim}" in roles and "fail" in roles  # it did fail over


def test_a_sentinel_master_killed_mid_traffic(sentinel: tuple[str, Servers],
                                             tmp_path: Path) -> None:
    url, servers = sentinel

    def kill() -> None:
        servers.procs[17100].kill()

    _record_through_a_failover(url, kill, tmp_path)
    info = subprocess.run(["redis-cli", "-p", "17110", "sentinel", "get-master-addr-by-name",
                           "calltap"], capture_output=True, text=True, check=True).stdout
    assert "17101" in info  # the replica is the master now
