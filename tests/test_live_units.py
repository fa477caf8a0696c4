"""The live shells against a real redis-server: the outage queue, parking, the disk alarm."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from calltap import live
from calltap.live import MAX_PENDING_OPS, RedisLink
from calltap.worker import Worker
from correlate.keys import WRITERS_GROUP, Keys
from writer.options import WriteOptions


def _shard(call: Any) -> int:
    """The shard the capture puts a call's job in."""
    return Keys.shard(Keys.tag(call.key))


def test_outage_queue_is_bounded_and_replayed_in_order(
        redis_url: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = redis_url
    link = RedisLink(url)  # no sender thread: flush sends, here
    link.do("set", "a", "1")
    assert link.pending  # queued: do never touches the network
    link.flush()
    assert link.up and not link.pending
    proc.send_signal(signal.SIGSTOP)
    link.do("xadd", "jobs", {"n": "0"})
    link.flush()
    assert not link.up and len(link.pending) == 1
    for n in range(MAX_PENDING_OPS + 5):
        link.do("set", f"k{n}", str(n))  # within the backoff: queued, not sent
    assert len(link.pending) == MAX_PENDING_OPS and link.dropped == 6
    assert link.pending[0][0] == "xadd"  # a job is kept before state updates
    proc.send_signal(signal.SIGCONT)
    link._retry_at = 0.0  # noqa: SLF001 - skip the rest of the backoff
    link.flush()
    assert link.up and not link.pending
    # at least once: a command the stopped server had already read is sent again (the
    # writers recognise a job they wrote)
    assert link.client.xlen("jobs") in (1, 2) and link.client.get(f"k{MAX_PENDING_OPS + 4}")


def test_only_jobs_recent_enough_to_send_again_are_kept(
        redis_url: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _proc = redis_url
    link = RedisLink(url)
    link.do("xadd", "p:jobs", {"n": "0"})
    link.do("set", "a", "1")  # carries no job: never sent again
    link.flush()
    assert [item[0] for _t, item in link.recent] == ["xadd"]
    # sent longer ago than a failover can lose: no longer held
    link.recent[0] = (link.recent[0][0] - live.RESEND_S - 1, link.recent[0][1])
    link.do("xadd", "p:jobs", {"n": "1"})
    link.flush()
    assert [item[1][1] for _t, item in link.recent] == [{"n": "1"}]


def test_an_unreadable_job_is_parked_not_retried(
        redis_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, _proc = redis_url
    w = Worker(url, str(tmp_path / "out"), WriteOptions(), name="w1")
    w.ensure_group()
    w.r.xadd(w.keys.jobs(0), {"call": b"{not json", "spool": b""})
    job = w.next_job()
    assert job is not None
    w.handle(*job)
    assert w.parked == 1 and w.r.xlen(w.keys.parked(0)) == 1
    (entry,) = w.r.xrange(w.keys.parked(0))
    assert entry[1][b"error"].startswith(b"unreadable job")
    assert w.r.xpending(w.keys.jobs(0), WRITERS_GROUP)["pending"] == 0
    assert w.next_job() is None


def test_disk_alarm_stops_new_spools(redis_url: tuple[str, subprocess.Popen[bytes]],
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from calltap.config import Config
    from calltap.generate import GenOptions, generate
    from capture.pcapfile import open_capture

    url, _proc = redis_url
    cap = live.LiveCapture(Config(), url, str(tmp_path / "spool"), "test", background=False)
    monkeypatch.setattr(live, "MIN_FREE_BYTES", 1 << 62)  # no disk is that large
    cap.check_disk()
    assert cap.disk_alarm
    pcap = tmp_path / "one.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=1.0, seed=2))
    cap.recorder.feed(open_capture(str(pcap)))
    cap._events()  # noqa: SLF001 - what the capture loop does after each batch
    (call,) = cap.recorder.tracker.calls.values()
    assert call.decision is not None and call.decision.rule == "disk-full"
    assert not call.decision.record and cap.not_spooled_disk == 1
    assert not list((tmp_path / "spool").glob("*.spool"))


def test_a_job_delivered_twice_is_written_once(
        redis_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    from calltap.config import Config
    from calltap.streams import calls_in
    from correlate.record import call_to_json
    from tests.helpers import ROOT, load_index

    url, _proc = redis_url
    call = calls_in(str(ROOT / "pcaps" / "sample-calls.pcap"), Config())[0]
    w = Worker(url, str(tmp_path / "out"), WriteOptions(), name="w1")
    w.ensure_group()
    for _ in range(2):
        w.r.xadd(w.keys.jobs(_shard(call)), {"call": call_to_json(call), "spool": ""})
    for _ in range(2):
        job = w.next_job()
        assert job is not None
        w.handle(*job)
    assert (w.written, w.duplicates) == (1, 1)
    assert len(load_index(tmp_path / "out")) == 1
    assert w.r.xlen(w.keys.events(_shard(call))) == 1


def test_writer_takes_no_job_when_the_output_disk_is_nearly_full(
        redis_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from calltap import worker

    url, _proc = redis_url
    w = Worker(url, str(tmp_path / "out"), WriteOptions(), name="w1")
    assert not w.out_of_space()
    monkeypatch.setattr(worker, "MIN_FREE_BYTES", 1 << 62)
    assert w.out_of_space() and w.disk_alarm


def test_jobs_unsent_at_exit_are_sent_by_the_next_start(
        redis_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    from calltap.config import Config

    url, proc = redis_url
    cap = live.LiveCapture(Config(), url, str(tmp_path / "spool"), "test")
    proc.send_signal(signal.SIGSTOP)
    cap.link.do("xadd", cap.keys.jobs(3), {"call": "{}", "spool": "", "shard": "3"})
    assert len(cap.link.unsent()) == 1  # queued, or in flight to the stopped server
    cap._keep_unsent()  # noqa: SLF001 - what finish_live does when Redis stays away
    assert (tmp_path / "spool" / live.UNSENT_JOBS).exists()
    proc.send_signal(signal.SIGCONT)
    again = live.LiveCapture(Config(), url, str(tmp_path / "spool"), "test")
    assert not (tmp_path / "spool" / live.UNSENT_JOBS).exists()
    # at least once (the stopped server may have read the first attempt): writers
    # recognise a job they already wrote
    assert again.link.client.xlen(again.keys.jobs(3)) in (1, 2)


def test_parts_unsent_at_exit_are_handed_in_by_the_next_start(
        redis_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """A call recorded in parts (``--procs``): a part not handed to Redis before the
    capture stopped is kept on disk and handed in by the next start, which makes the job."""
    from calltap.config import Config
    from calltap.parts import part_op
    from correlate.keys import Keys

    url, proc = redis_url
    cap = live.LiveCapture(Config(), url, str(tmp_path / "spool"), "test", shared=True)
    tag = Keys.tag("c\x00t")
    proc.send_signal(signal.SIGSTOP)
    cap.link.do("multi", [part_op(cap.keys, tag, "p.0", {"spool": "/s/0"}, 1)])
    cap.link.do("multi", [part_op(cap.keys, tag, "p.1", None, 1)])  # nothing: not kept
    cap._keep_unsent()  # noqa: SLF001 - what finish_live does when Redis stays away
    cap.map.close()  # type: ignore[union-attr]
    assert len((tmp_path / "spool" / live.UNSENT_JOBS).read_text().splitlines()) == 1
    proc.send_signal(signal.SIGCONT)
    again = live.LiveCapture(Config(), url, str(tmp_path / "spool"), "test", shared=True)
    again.link.flush()
    again.map.close()  # type: ignore[union-attr]
    # at least once (the stopped server may have read the first attempt, which the first
    # process's sender also sends again once the server answers): writers recognise a call
    # they already wrote
    entries = again.link.client.xrange(again.keys.jobs(Keys.shard(tag)))
    assert 1 <= len(entries) <= 3
    assert all([p["spool"] for p in json.loads(e[1][b"parts"])] == ["/s/0"] for e in entries)


def test_a_job_whose_spool_is_missing_is_parked(
        redis_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    from calltap.config import Config
    from calltap.streams import calls_in
    from correlate.record import call_to_json
    from tests.helpers import ROOT

    url, _proc = redis_url
    call = calls_in(str(ROOT / "pcaps" / "sample-calls.pcap"), Config())[0]
    w = Worker(url, str(tmp_path / "out"), WriteOptions(), name="w1")
    w.ensure_group()
    w.r.xadd(w.keys.jobs(_shard(call)), {"call": call_to_json(call),
                                         "spool": str(tmp_path / "gone.spool")})
    job = w.next_job()
    assert job is not None
    w.handle(*job)
    assert w.parked == 1 and w.written == 0
    (entry,) = w.r.xrange(w.keys.parked(_shard(call)))
    assert entry[1][b"error"].startswith(b"spool file missing")


@pytest.mark.parametrize("variant, cfg", [("b2bua", {}), ("b2bua-media", {"join_by_media": True})])
def test_b2bua_legs_live_make_one_recording_like_import(
        variant: str, cfg: dict[str, bool], redis_url: tuple[str, subprocess.Popen[bytes]],
        tmp_path: Path) -> None:
    """A B2BUA's legs through the capture process and a writer, as on a live probe (the
    capture's packets fed as a source would): one recording per conversation, the same as
    the import of the same capture."""
    import json

    from calltap.config import Config
    from calltap.generate import GenOptions, generate
    from calltap.relay import RELAY_VARIANTS
    from capture.pcapfile import open_capture
    from tests.helpers import load_index, pcap_bytes, read_wav, run_import

    url, _proc = redis_url
    clean = tmp_path / "clean.pcap"
    generate(str(clean), GenOptions(calls=2, duration=4.0, seed=8))
    frames = [(t, f) for t, _l, f in open_capture(str(clean))]
    pcap = tmp_path / f"{variant}.pcap"
    pcap.write_bytes(pcap_bytes(RELAY_VARIANTS[variant](frames)))
    conf = Config(**cfg)  # type: ignore[arg-type]
    cap = live.LiveCapture(conf, url, str(tmp_path / "spool"), "test", background=False)
    cap.recorder.feed(open_capture(str(pcap)))
    cap._events()  # noqa: SLF001 - what the capture loop does after each batch
    cap.finish_live()
    w = Worker(url, str(tmp_path / "live"), WriteOptions(durable=False), name="w1")
    w.ensure_group()
    while (job := w.next_job()) is not None:
        w.handle(*job)
    run_import([pcap], tmp_path / "imp", jobs=1, **cfg)
    live_idx = {e["call_id"]: e for e in load_index(tmp_path / "live")}
    imp_idx = {e["call_id"]: e for e in load_index(tmp_path / "imp")}
    assert len(live_idx) == 2 and live_idx.keys() == imp_idx.keys()
    for cid, e in live_idx.items():
        assert e["legs"] == [f"b2b-{cid}"] == imp_idx[cid]["legs"]
        a, _ = read_wav(tmp_path / "live" / e["audio"])
        b, _ = read_wav(tmp_path / "imp" / imp_idx[cid]["audio"])
        assert (a == b).all()
        s = json.loads((tmp_path / "live" / e["summary"]).read_text())
        assert [leg["call_id"] for leg in s["call"]["legs"]] == [f"b2b-{cid}"]


def _sample_job(w: Worker) -> int:
    from calltap.config import Config
    from calltap.streams import calls_in
    from correlate.record import call_to_json
    from tests.helpers import ROOT

    call = calls_in(str(ROOT / "pcaps" / "sample-calls.pcap"), Config())[0]
    w.r.xadd(w.keys.jobs(_shard(call)), {"call": call_to_json(call), "spool": ""})
    return _shard(call)


def test_a_slow_write_keeps_its_claim(redis_url: tuple[str, subprocess.Popen[bytes]],
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that lasts three claim timeouts is never taken by another writer: the
    heartbeat renews the claim; the job is committed once and deleted."""
    import threading
    import time

    from calltap import worker
    from tests.helpers import load_index

    url, _proc = redis_url
    real = worker.write_call

    def slow(*args: object, **kw: object) -> object:
        time.sleep(1.8)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "write_call", slow)
    w1 = Worker(url, str(tmp_path / "out"), WriteOptions(), name="w1", claim_idle_ms=600)
    w2 = Worker(url, str(tmp_path / "out"), WriteOptions(), name="w2", claim_idle_ms=600)
    w1.ensure_group()
    k = _sample_job(w1)
    job = w1.next_job()
    assert job is not None
    t = threading.Thread(target=w1.handle, args=job)
    t.start()
    stolen = []
    while t.is_alive():
        got = w2.r.xautoclaim(w2.keys.jobs(k), WRITERS_GROUP, "w2", 600, "0-0", count=1)
        stolen += got[1]
        time.sleep(0.1)
    t.join()
    assert stolen == [] and w1.written == 1
    assert len(load_index(tmp_path / "out")) == 1 and w1.r.xlen(w1.keys.events(k)) == 1
    assert w1.r.xlen(w1.keys.jobs(k)) == 0  # committed: acknowledged and deleted


def test_a_writer_killed_mid_write_is_replaced_and_the_call_written_once(
        redis_url: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    import sys
    import time

    from tests.helpers import ROOT, load_index

    url, _proc = redis_url
    w2 = Worker(url, str(tmp_path / "out"), WriteOptions(), name="w2", claim_idle_ms=800)
    w2.ensure_group()
    _sample_job(w2)
    # a writer process whose write hangs (as on a stalled disk), then is killed with -9
    script = (
        "import sys, time\n"
        "from calltap import worker\n"
        "from writer.options import WriteOptions\n"
        "worker.write_call = lambda *a, **k: time.sleep(60)\n"
        f"w = worker.Worker({url!r}, {str(tmp_path / 'out')!r}, WriteOptions(), name='w1',"
        " claim_idle_ms=800)\n"
        "job = w.next_job()\n"
        "print('took', flush=True)\n"
        "w.handle(*job)\n")
    p = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == b"took"
    time.sleep(1.5)  # its heartbeat keeps the claim while it lives
    assert w2.next_job() is None
    p.kill()
    p.wait()
    deadline = time.monotonic() + 5
    job = None
    while job is None and time.monotonic() < deadline:
        job = w2.next_job()  # taken over once the dead writer's claim goes idle
    assert job is not None and w2.attempts(job[0]) == 2
    w2.handle(*job)
    assert w2.written == 1 and len(load_index(tmp_path / "out")) == 1
    k = int(job[0].split("/")[0])
    assert w2.r.xlen(w2.keys.jobs(k)) == 0 and w2.r.xlen(w2.keys.events(k)) == 1
