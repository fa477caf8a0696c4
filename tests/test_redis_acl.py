"""The Redis ACL users shipped in calltap/deploy/redis-users.acl, on a real redis-server:
a probe, a writer, the dashboard and an operator each work under their own user, and a
user cannot do another role's work."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from calltap import live
from calltap.config import Config
from calltap.generate import GenOptions, generate
from calltap.livecalls import LiveBoard
from calltap.worker import Worker
from capture.pcapfile import open_capture
from correlate.keys import Keys
from tests.helpers import ROOT, load_index
from writer.options import WriteOptions

ACL = ROOT / "calltap" / "deploy" / "redis-users.acl"
PORT = 17800


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/setup installs it)")
    acl = tmp_path / "users.acl"
    shutil.copy(ACL, acl)  # Redis rewrites its ACL file on ACL SAVE: a copy of our own
    p = subprocess.Popen(["redis-server", "--port", str(PORT), "--bind", "127.0.0.1",
                          "--aclfile", str(acl), "--save", "", "--dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from tests.test_e2e_failover import _wait_port

    try:
        _wait_port(PORT)
        yield f"127.0.0.1:{PORT}"
    finally:
        p.kill()
        p.wait()


def _url(user: str, where: str) -> str:
    return f"redis://{user}:CHANGE-ME-{user}@{where}"


def test_each_role_works_under_its_own_user(server: str, tmp_path: Path) -> None:
    import redis

    pcap = tmp_path / "calls.pcap"
    generate(str(pcap), GenOptions(calls=3, duration=2.0, seed=5))
    cap = live.LiveCapture(Config(), _url("probe", server), str(tmp_path / "spool"), "test",
                           background=False)
    cap.recorder.feed(open_capture(str(pcap)))
    cap._events()  # noqa: SLF001 - what the capture loop does after each batch
    cap.save_changed()
    cap.link.flush()
    assert cap.link.up and not cap.link.pending  # the calls' state stored
    cap.finish_live()
    keys = Keys()
    assert sum(cap.link.client.xlen(keys.jobs(k)) for k in keys.shards) == 3
    assert cap.link.dropped == 0 and not (tmp_path / "spool" / live.UNSENT_JOBS).exists()

    w = Worker(_url("writer", server), str(tmp_path / "out"), WriteOptions(durable=False),
               name="w1")
    w.ensure_group()
    while (job := w.next_job()) is not None:
        w.handle(*job)
    assert w.written == 3 and w.parked == 0 and len(load_index(tmp_path / "out")) == 3

    board = LiveBoard(_url("dashboard", server), "calltap", str(tmp_path / "spool"))
    assert board.calls() == {}  # all ended
    got = board.events(",".join(["0-0"] * len(keys.shards)), 0)
    assert sum(f["type"] == "recording-ready" for _id, f in got) == 3

    r = subprocess.run([sys.executable, "-m", "calltap.cli", "pause", "--redis",
                        _url("operator", server), "some-call-id"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr

    # and no role can do another's work
    probe = redis.Redis.from_url(_url("probe", server))
    with pytest.raises(redis.exceptions.NoPermissionError):
        probe.xreadgroup("writers", "x", {keys.jobs(0): ">"}, count=1)
    dash = redis.Redis.from_url(_url("dashboard", server))
    with pytest.raises(redis.exceptions.NoPermissionError):
        dash.xadd(keys.jobs(0), {"x": "1"})
    writer = redis.Redis.from_url(_url("writer", server))
    with pytest.raises(redis.exceptions.NoPermissionError):
        writer.get(keys.call("p", Keys.tag("c")))
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=PORT).ping()  # no default user


def test_calls_in_parts_work_under_the_probe_and_writer_users(server: str) -> None:
    """The commands of calls recorded in parts (``capture --procs``, ``shared_media``):
    the media map and the parts script for probes, the stale sweep for writers, commands
    run inside the script included."""
    import redis

    from calltap.parts import PART_STALE_S, open_ops, part_op, sweep

    keys = Keys()
    tag = Keys.tag("c\x00t")
    now = 1_800_000_000_000
    probe = redis.Redis.from_url(_url("probe", server))
    probe.xadd(keys.media_map, {"a": "{}"})
    assert probe.xread({keys.media_map: "0-0"})
    pipe = probe.pipeline(transaction=True)
    for op, args, kw in [*open_ops(keys, tag, "a", now), *open_ops(keys, tag, "b", now),
                         part_op(keys, tag, "a", {"spool": "/s"}, now)]:
        getattr(pipe, op)(*args, **kw)
    assert pipe.execute()[-1] == 0
    writer = redis.Redis.from_url(_url("writer", server))
    assert sweep(writer, keys, now + int(PART_STALE_S * 1000) + 1) == 1
    assert probe.xlen(keys.jobs(Keys.shard(tag))) == 1
    dash = redis.Redis.from_url(_url("dashboard", server))
    with pytest.raises(redis.exceptions.NoPermissionError):
        dash.eval("return 1", 0)
