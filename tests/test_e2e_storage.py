"""Recordings in object storage, with real servers: moto's S3 server on loopback, a
redis-server, a probe recording SIPp calls and a writer that cannot see the probe's disk
(its own mount namespace hides the spool directory). The probe stores finished spools in
the bucket, the writer renders from there and stores recordings and index segments; the
S3 server stopped for 20 seconds loses nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, capture_started, load_index, load_summary, wait_for_log
from tests.test_e2e_live import PY, Redis, Sipp, _need, tcpdump

CALLS = 4
S3_PORT = 17600
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
           AWS_DEFAULT_REGION="us-east-1")


def _moto(where: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("moto_server")
    p = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(S3_PORT)], cwd=where,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    from tests.test_e2e_failover import _wait_port

    _wait_port(S3_PORT, 20)
    return p


def test_probe_and_writer_through_object_storage(tmp_path: Path, postgres_url: str) -> None:
    _need()
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to hide the probe's disk")
    os.environ.update({k: ENV[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")})
    from writer.storage import S3Store

    redis = Redis(tmp_path)
    moto = _moto(tmp_path)
    store = S3Store("s3://recordings/site1", f"http://127.0.0.1:{S3_PORT}")
    store.client.create_bucket(Bucket="recordings")
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:  # a catalog of its own
        db.execute("DROP DATABASE IF EXISTS calltap_storage")
        db.execute("CREATE DATABASE calltap_storage")
    catalog_url = postgres_url.rsplit("/", 1)[0] + "/calltap_storage"
    cfg = tmp_path / "calltap.toml"
    cfg.write_text('storage_url = "s3://recordings/site1"\n'
                   f's3_endpoint_url = "http://127.0.0.1:{S3_PORT}"\n'
                   f'catalog_url = "{catalog_url}"\n')
    sipp = Sipp(14300, tmp_path)
    spool, out, logs = tmp_path / "probe-spool", tmp_path / "writer-out", tmp_path / "logs"
    spool.mkdir()
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        td = tcpdump(sipp.bpf, tmp_path / "cap.pcap")
        procs.append(td)
        writer_cmd = " ".join([*PY, "writer", "--redis", redis.url, "--out", str(out),
                               "--config", str(cfg)])
        # the writer's host: the probe's spool directory is an empty tmpfs there
        writer = subprocess.Popen(["unshare", "--mount", "sh", "-c",
                                   f"mount -t tmpfs none {spool} && exec {writer_cmd}"],
                                  cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                  stderr=(logs / "writer.log").open("wb"))
        capture = subprocess.Popen([*PY, "capture", "--interface", "lo", "--redis", redis.url,
                                    "--spool", str(spool), "--filter", sipp.bpf,
                                    "--probe", "site1-probe", "--config", str(cfg)],
                                   cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                   stderr=(logs / "capture.log").open("wb"))
        procs += [writer, capture]
        wait_for_log(logs / "capture.log", capture, capture_started)
        sipp.start(calls=CALLS, rate_ms=1500, limit=2)
        time.sleep(3.0)
        moto.send_signal(signal.SIGSTOP)  # the object storage is away for 20 s
        time.sleep(20.0)
        moto.send_signal(signal.SIGCONT)
        sipp.wait(60)
        deadline = time.monotonic() + 60
        while len(load_index(out)) < CALLS and time.monotonic() < deadline:
            time.sleep(0.25)
        time.sleep(1.0)
        for p in (capture, writer):
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        td.send_signal(signal.SIGINT)
        td.wait(10)

        index = load_index(out)
        assert len(index) == CALLS and len({e["call_id"] for e in index}) == CALLS
        names = set(store.list())
        for e in index:
            stem = e["summary"][:-len(".json")]
            for rel in (e["audio"], e["metadata"], e["summary"], e["view"], e["sip_pcap"]):
                assert rel in names, rel
                local = (out / rel).read_bytes()
                store.get_file(rel, str(tmp_path / "readback"))  # checked against its SHA-256
                back = (tmp_path / "readback").read_bytes()
                assert back == local, rel
                digest = base64.b64encode(hashlib.sha256(back).digest()).decode()
                assert store.checksum(rel) == digest, rel
            assert f"{stem}.wav" == e["audio"]
        # the index as immutable segments: every call once
        lines = []
        for rel in sorted(n for n in names if n.startswith("index/")):
            store.get_file(rel, str(tmp_path / "segment"))
            lines += [json.loads(x) for x in (tmp_path / "segment").read_text().splitlines()]
        assert sorted(x["call_id"] for x in lines) == sorted(e["call_id"] for e in index)
        # nothing left waiting: spools used and deleted, queues empty
        assert not [n for n in names if n.startswith("spools/")]
        assert not list(spool.glob("*.spool"))
        assert not list((spool / "upload-queue").glob("*.json"))
        assert not list((out / ".calltap" / "upload-queue").glob("*.json"))
        logged = (logs / "writer.log").read_text() + (logs / "capture.log").read_text()
        assert "uploads wait on disk" in logged  # the outage was felt, and ridden out
        assert "Traceback" not in logged
        # the recordings are in the shared catalog, and the dashboard's search finds them
        from fastapi.testclient import TestClient

        from calltap.serve import create_app

        (tmp_path / "dashboard-host").mkdir()  # another host: no recordings on its disk
        found = TestClient(create_app(str(tmp_path / "dashboard-host"),
                                      catalog_url=catalog_url)).get("/api/calls").json()
        assert sorted(c["call_id"] for c in found["calls"]) == sorted(
            e["call_id"] for e in index)
        # the recordings are the calls' audio: the same as importing the tcpdump capture
        subprocess.run([*PY, "import", "--no-progress", "--out", str(tmp_path / "imp"),
                        str(tmp_path / "cap.pcap")], cwd=ROOT, check=True,
                       capture_output=True)
        imported = {e["call_id"]: e for e in load_index(tmp_path / "imp")}
        for e in index:
            other = imported[e["call_id"]]
            ref = (tmp_path / "imp" / other["audio"]).read_bytes()
            if (out / e["audio"]).read_bytes() != ref:
                # what tells a recorder's fault from the oracle's: the packets each saw, and
                # when (tcpdump's socket stamps a packet a microsecond or two apart)
                s, t = load_summary(out, e), load_summary(tmp_path / "imp", other)
                seen = [[(d["packets"], d["first_packet"], d["last_packet"])
                         for d in x["directions"]] for x in (s, t)]
                pytest.fail(f"{e['call_id']}: live {s.get('audio_frames')} frames, import "
                            f"{t.get('audio_frames')}; directions live, import: {seen}")
    finally:
        moto.send_signal(signal.SIGCONT)
        for p in [*procs, moto]:
            if p.poll() is None:
                p.kill()
                p.wait()
        sipp.stop()
        redis.stop()
