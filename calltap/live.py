"""`calltap capture`: the import core on a live interface. Calls in progress are kept in
Redis (a restarted capture process takes them up again), each call's packets go to its
spool file, and a finished call becomes a job on the Redis stream the writers read.

When Redis cannot be reached, state changes and jobs wait in a bounded queue and are sent
once it is back (with backoff); packets keep being spooled meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import replace
from typing import Any

from calltap.config import Config
from calltap.importer import settings_from
from calltap.log import disk_low, log
from calltap.objects import store_from
from calltap.parts import PART_REFRESH_S, PART_SCRIPT, open_ops, part_op
from calltap.policyfile import PolicyError, load_policy
from calltap.redisconn import primaries
from capture.decode import format_ip
from capture.live import LiveSource
from capture.spool import SpoolSet
from correlate.call import Call
from correlate.events import CallEnded, CallMoved, CallStarted, FlowAdded, MediaChanged
from correlate.keys import CALL_TTL_S, EVENTS_MAXLEN, JOBS_MAXLEN, MEDIA_MAP_MAXLEN, SHARDS, Keys
from correlate.policy import Policy, set_paused
from correlate.record import (
    CallRecord,
    RecordError,
    call_from_json,
    call_to_json,
    record_to_json,
)
from correlate.recorder import Recorder
from correlate.router import SpoolSink
from correlate.shared import Announcement, AnnouncementError, announcements, from_json, to_json
from writer.columns import spool_columns
from writer.mediajoin import MediaJoiner
from writer.storage import Uploader

NS = 1_000_000_000
# Redis operations waiting while Redis is unreachable: each is a call record or a job of a
# few KiB; a minute of a 1,000-call site's changes fits. Past it the oldest state updates
# go (jobs are kept first: a lost state update is refreshed by the next).
MAX_PENDING_OPS = 20_000
# Reconnection backoff after a Redis error: doubling from the first to the last.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 5.0
# Jobs not handed to Redis when the process stopped, in the spool directory.
UNSENT_JOBS = "unsent-jobs.jsonl"
# Commands sent in one pipeline: a round trip per batch, not per command.
PIPELINE = 256
# Control commands read and not yet applied: pauses come a few a second at most.
MAX_COMMANDS = 1000
# Spool buffers are written, and changed calls stored, this often: a crash of the capture
# process loses at most this much before the outage itself.
FLUSH_S = 0.25
# Jobs sent this recently are sent again when Redis comes back after an error: a master that
# failed over may not have passed its last writes to the replica now in charge (writers
# write a job sent twice once). Far longer than a Sentinel or Cluster failover takes.
RESEND_S = 30.0
# At most this many recent jobs are kept for that (RESEND_S of a busy site's calls).
MAX_RECENT_JOBS = 10_000
# Shared media map entries read and not yet applied: a few per call starting or changing.
MAX_ANNOUNCEMENTS = 100_000
# A starting process reads the map this far back: calls in progress it may hold media of.
MAP_REPLAY_S = 120.0
# How long one read of the map waits for an entry (the reader's own connection).
MAP_BLOCK_MS = 200
# Below this free space on the spool's file system, no new call gets a spool (active calls
# keep recording) and an alarm is raised.
MIN_FREE_BYTES = 256 * 1024 * 1024


def live_fields(call: Call) -> dict[str, Any]:
    """What a live call list shows of a call in progress, and what a user's visibility
    limits are judged on (parties, addresses, group)."""
    codec = ""
    for side in (1, 0):  # the answer's first format is what flows; else the offer's
        if call.offers[side]:
            o = call.offers[side][-1]
            if o.formats and o.formats[0].isdigit():
                pt = int(o.formats[0])
                codec = o.rtpmap[pt][0] if pt in o.rtpmap else _STATIC.get(pt, str(pt))
                break
    addrs = {format_ip(e[0]) for e in (call.caller_signal, call.callee_signal) if e}
    addrs |= {format_ip(o.addr) for side in call.offers for o in side}
    return {"call_id": call.call_id, "caller": call.caller_uri, "callee": call.callee_uri,
            "start_ns": call.start_ns, "answer_ns": call.answer_ns, "status": call.status,
            "codec": codec, "serial": call.serial, "addrs": sorted(addrs),
            "group": call.decision.group if call.decision is not None else "",
            "paused": bool(call.pauses and not call.pauses[-1][1])}


_STATIC = {0: "PCMU", 8: "PCMA", 9: "G722", 18: "G729", 3: "GSM", 4: "G723"}


def _jobs_in(item: tuple[str, tuple[Any, ...], dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs a queued command (or transaction) adds to a jobs stream, and the parts it
    hands in (as ``{"part": the script's keys and arguments}``)."""
    op, args, _kw = item
    inner = args[0] if op == "multi" else [item]
    return [a[1] if o == "xadd" else {"part": list(a[1:])} for o, a, _k in inner
            if (o == "xadd" and str(a[0]).endswith(":jobs"))
            or (o == "eval" and a[0] == PART_SCRIPT and a[6] != "none")]


class RedisLink:
    """Redis commands that never hold up the capture loop: ``do`` only queues (bounded); a
    sender thread sends in order, pipelined, and reconnects with backoff while Redis is
    away. The same thread reads the control stream, so a hung Redis costs the packet loop
    nothing. Without ``background`` (tests), ``flush`` sends on the caller's thread."""

    def __init__(self, url: str, background: bool = False, control: str = "",
                 control_id: str = "0-0") -> None:
        import redis

        from calltap.redisconn import connect

        self._redis = connect(url, socket_timeout=2, socket_connect_timeout=2)
        self._errors = (redis.RedisError, OSError)
        self.pending: deque[tuple[str, tuple[Any, ...], dict[str, Any]]] = deque()
        self.dropped = 0
        self.up = True
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST_S
        self._lock = threading.Lock()
        self._inflight: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        """The batch being sent: back to the front of ``pending`` if the send fails."""
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self.control = control
        """The control stream to read ("" for none), from ``control_id`` on."""
        self.control_id = control_id
        self.commands: deque[tuple[str, dict[bytes, bytes]]] = deque(maxlen=MAX_COMMANDS)
        """Control entries read and not yet taken by the capture loop."""
        self.recent: deque[tuple[float, tuple[str, tuple[Any, ...], dict[str, Any]]]] = \
            deque(maxlen=MAX_RECENT_JOBS)
        """Commands that carried a job, with when they were sent (monotonic)."""
        self.reconnects = 0
        """Times Redis came back after an error: the capture stores its calls again."""
        self.watch: list[str] = []
        """Keys whose servers are watched: when another server takes them over (a failover
        the client rode through without an error), recent jobs go again too."""
        self._primaries: Any = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="redis-outbox",
                                            daemon=True)
            self._thread.start()

    @property
    def client(self) -> Any:
        return self._redis

    def do(self, op: str, *args: Any, **kw: Any) -> None:
        """Queue a command (sent by the sender thread, or by ``flush``); ``do("multi",
        [(op, args, kw), ...])`` queues commands sent as one transaction (keys of one
        slot)."""
        with self._lock:
            if len(self.pending) >= MAX_PENDING_OPS:
                for k, item in enumerate(self.pending):
                    if item[0] not in ("xadd", "multi"):  # a state update: the next one
                        # refreshes it
                        del self.pending[k]
                        break
                else:
                    self.pending.popleft()
                self.dropped += 1
            self.pending.append((op, args, kw))
        self._wake.set()

    def flush(self) -> None:
        """Send what is queued, in order, unless backing off after an error. One flusher
        at a time; a batch in flight leaves the queue and goes back to its front if the
        send fails, so trimming the queue never touches it."""
        if time.monotonic() < self._retry_at:
            return
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        try:
            while True:
                with self._lock:
                    batch = [self.pending.popleft()
                             for _ in range(min(PIPELINE, len(self.pending)))]
                    self._inflight = batch
                if not batch:
                    break
                try:
                    pipe = self._redis.pipeline(transaction=False)
                    for op, args, kw in batch:
                        if op != "multi":
                            getattr(pipe, op)(*args, **kw)
                            continue
                        pipe.execute()  # what came before, then the group on its own
                        group = self._redis.pipeline(transaction=True)
                        for op2, args2, kw2 in args[0]:
                            getattr(group, op2)(*args2, **kw2)
                        group.execute()
                    pipe.execute()
                except BaseException:
                    with self._lock:
                        self.pending.extendleft(reversed(batch))
                        self._inflight = []
                    raise
                with self._lock:
                    self._inflight = []
                now = time.monotonic()
                self.recent.extend((now, item) for item in batch if _jobs_in(item))
                while self.recent and self.recent[0][0] < now - RESEND_S:
                    self.recent.popleft()  # older than RESEND_S: never sent again
            if self.control:
                got: Any = self._redis.xread({self.control: self.control_id}, count=100)
                for _stream, entries in got or []:
                    for entry_id, fields in entries:
                        self.control_id = entry_id.decode()
                        self.commands.append((self.control_id, fields))
            if not self.up:
                log("capture", "redis reachable again", dropped_ops=self.dropped)
                self._resend_recent()
            elif self.watch:
                now_primaries = primaries(self._redis, self.watch)
                if self._primaries is not None and now_primaries != self._primaries:
                    log("capture", "redis failed over", "warning")
                    self._resend_recent()
                self._primaries = now_primaries
            self.up, self._backoff = True, BACKOFF_FIRST_S
        except self._errors as exc:
            if self.up:
                log("capture", "redis unreachable; queueing", "warning", error=str(exc))
            self.up = False
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)

    def _resend_recent(self) -> None:
        """After an error: the jobs of the last RESEND_S go again (a failed-over master may
        have lost them), and the capture is told to store its calls again."""
        horizon = time.monotonic() - RESEND_S
        again = [item for t, item in self.recent if t >= horizon]
        self.recent.clear()
        with self._lock:
            self.pending.extend(again)
        self.reconnects += 1
        if again:
            log("capture", "jobs sent again after a redis error", jobs=len(again))

    def unsent(self) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        """Every command not yet known to be sent, the batch in flight first."""
        with self._lock:
            return [*self._inflight, *self.pending]

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            self.flush()

    def close(self, deadline_s: float) -> None:
        """Stop the sender thread, after it has sent what it can within ``deadline_s``."""
        end = time.monotonic() + deadline_s
        while self.unsent() and time.monotonic() < end:
            if self._thread is None:
                self.flush()
            else:
                self._wake.set()
            time.sleep(0.05)
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(deadline_s + 2.5)


# A call's record is stored again at least this often, so a call steady for a day keeps
# its record (and its place in the probe's live set) within CALL_TTL_S.
REFRESH_S = 3600.0


def probe_default() -> str:
    """The host's name, as a probe name (characters outside the allowed ones become -)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64] or "probe"


class MapReader:
    """Reads the shared media map on a thread and connection of its own (a blocking read:
    an announcement reaches the capture loop within milliseconds); the loop takes what it
    read from ``got``. Entries of ``me`` are skipped."""

    def __init__(self, url: str, stream: str, me: str, start_ms: int) -> None:
        from calltap.redisconn import connect

        self._redis = connect(url, socket_timeout=5, socket_connect_timeout=2)
        self.stream, self.me = stream, me
        self.last_id = f"{start_ms}-0"
        self.got: deque[Announcement] = deque(maxlen=MAX_ANNOUNCEMENTS)
        self.unreadable = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="media-map", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import redis

        backoff = BACKOFF_FIRST_S
        while not self._stop:
            try:
                got: Any = self._redis.xread({self.stream: self.last_id}, count=500,
                                             block=MAP_BLOCK_MS)
                backoff = BACKOFF_FIRST_S
            except (redis.RedisError, OSError):
                time.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            for _stream, entries in got or []:
                for entry_id, fields in entries:
                    self.last_id = entry_id.decode()
                    try:
                        a = from_json(fields.get(b"a", b""))
                    except AnnouncementError:
                        self.unreadable += 1
                        continue
                    if a.owner != self.me:
                        self.got.append(a)

    def close(self) -> None:
        """Stop reading: the thread ends after its current read (a daemon, it never holds
        up the process's exit when Redis does not answer)."""
        self._stop = True
        self._thread.join(MAP_BLOCK_MS / 1000 + 0.3)


class LiveCapture:
    """A Recorder on a live source, with Redis for call state and jobs."""

    def __init__(self, cfg: Config, redis_url: str, spool_dir: str, source_name: str,
                 prefix: str = "calltap", background: bool = True,
                 shared: bool = False) -> None:
        os.makedirs(spool_dir, exist_ok=True)
        self.cfg = cfg
        self.shared = shared or cfg.shared_media
        """Calls are recorded in parts with other processes or probes (the media map)."""
        self.spool = SpoolSet(spool_dir, sealed=bool(cfg.encrypt_to))
        # sealed spools' keys from a call's end until its job is sent (a call held for a
        # join by media waits here too): bounded as the calls and the joiner are
        self._spool_keys: dict[str, bytes] = {}
        self.recorder = Recorder(replace(settings_from(cfg), shared=self.shared),
                                 load_policy(cfg.policy) if cfg.policy else Policy(),
                                 SpoolSink(self.spool), source_name)
        self.keys = Keys(prefix)
        self.probe = cfg.probe_name or probe_default()
        """This probe's name: its calls in progress are its own, and its jobs say so."""
        self._joiner = MediaJoiner() if cfg.join_by_media and cfg.join_legs else None
        setup = RedisLink(redis_url)  # start-up reads, before any packet: synchronous
        self.stopping = False
        self.reload_requested = False
        self.warnings: list[str] = []
        self.jobs_sent = 0
        self.bytes_total = 0
        self.disk_alarm = False
        self._saved: dict[str, tuple[tuple[int, ...], float]] = {}
        """Per live call, what it looked like when last stored (to store only changes)."""
        # serials name spool files: never reuse one a writer may still be reading
        self.recorder.tracker.start_serials_at(time.time_ns() // 1_000_000)
        self.restored = self._restore(setup)
        control_id = self._last_control(setup)
        """Commands sent while no capture ran are not replayed (a pause is a decision about
        audio flowing now)."""
        self.link = RedisLink(redis_url, background, self.keys.control, control_id)
        self.link.watch = [self.keys.jobs(k) for k in self.keys.shards]
        store = store_from(cfg)
        self.uploader = Uploader(store, os.path.join(spool_dir, "upload-queue"),
                                 self._uploaded, "spool-uploads").start() if store else None
        """Object storage: a finished call's spools go there (then its job), so writers on
        any host reach them; what waits is on this disk, taken up again after a restart."""
        self._resend_unsent()
        self.controls_applied = 0
        self._reconnects_seen = 0
        self._opened: dict[str, float] = {}
        """Per call recorded in parts, when its open mark was last refreshed."""
        self.map = MapReader(redis_url, self.keys.media_map, self.probe,
                             int((time.time() - MAP_REPLAY_S) * 1000)) if self.shared else None

    # what the Recorder counted (metrics)
    packets = property(lambda self: self.recorder.packets)
    sip_packets = property(lambda self: self.recorder.sip_packets)
    media_packets = property(lambda self: self.recorder.media_packets)
    hep_packets = property(lambda self: self.recorder.hep_packets)
    reassembled = property(lambda self: self.recorder.reassembled)
    calls_skipped = property(lambda self: self.recorder.calls_skipped)
    not_spooled_disk = property(lambda self: self.recorder.calls_refused)
    tracker = property(lambda self: self.recorder.tracker)

    def _unsent_path(self) -> str:
        return os.path.join(self.spool.directory, UNSENT_JOBS)

    def _resend_unsent(self) -> None:
        """Jobs an earlier process could not hand to Redis before it stopped."""
        path = self._unsent_path()
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    fields = json.loads(line)
                    if "part" in fields:  # a call's part, handed in as it was
                        self.link.do("eval", PART_SCRIPT, *fields["part"])
                        continue
                    k = int(fields["shard"])
                except (ValueError, KeyError, TypeError):
                    continue
                self.link.do("xadd", self.keys.jobs(k % SHARDS), fields, maxlen=JOBS_MAXLEN,
                             approximate=True)
        self.link.flush()
        os.unlink(path)

    def _keep_unsent(self) -> None:
        """At exit with Redis unreachable: the jobs go to a file the next start sends, so a
        finished call is never lost (its spool file is on the same disk)."""
        jobs = [job for item in self.link.unsent() for job in _jobs_in(item)]
        if not jobs:
            return
        with open(self._unsent_path(), "a", encoding="utf-8") as f:
            for fields in jobs:
                f.write(json.dumps(fields) + "\n")
        log("capture", "redis unreachable at exit: jobs kept for the next start", "warning",
            jobs=len(jobs), file=self._unsent_path())

    def _restore(self, link: RedisLink) -> int:
        """Take up the calls a previous capture process had in progress."""
        r = link.client
        try:
            r.sadd(self.keys.probes, self.probe)
            tags = []
            for k in self.keys.shards:
                live = self.keys.live(self.probe, k)
                # records older than their TTL are gone: so go their tags
                r.zremrangebyscore(live, 0, time.time() * 1000 - CALL_TTL_S * 1000)
                tags += [t.decode() for t in r.zrange(live, 0, -1)]
            pipe = r.pipeline(transaction=False)
            for t in tags:
                pipe.get(self.keys.call(self.probe, t))
            for t in tags:
                pipe.get(self.keys.spool_key(self.probe, t))
            got = pipe.execute()
        except link._errors:  # noqa: SLF001 - Redis down at start: nothing to restore
            return 0
        records, spool_keys = got[:len(tags)], got[len(tags):]
        n = 0
        for tag, raw, spool_key in zip(tags, records, spool_keys, strict=True):
            if raw is None:
                with contextlib.suppress(*link._errors):  # noqa: SLF001
                    r.zrem(self.keys.live(self.probe, Keys.shard(tag)), tag)
                continue
            try:
                call = call_from_json(raw)
            except RecordError:
                continue
            if spool_key:  # its spool goes on sealed with the key it began with
                self.spool.adopt(call.serial, bytes.fromhex(spool_key.decode()))
            self.recorder.restore(call)
            n += 1
        return n

    @staticmethod
    def _signature(call: Call) -> tuple[int, ...]:
        return (call.sip_messages, call.state, len(call.flows), len(call.pauses),
                call.pauses[-1][1] if call.pauses else -1, sum(len(o) for o in call.offers),
                call.answer_ns)

    def save_changed(self) -> None:
        """Store the calls whose dialog, media or pauses changed since they were stored,
        and every call not stored for REFRESH_S (its record must outlive its TTL); after a
        Redis error, every call (a failed-over master may have lost the last updates)."""
        if self.link.reconnects != self._reconnects_seen:
            self._reconnects_seen = self.link.reconnects
            self._saved.clear()
        now = time.monotonic()
        for call in list(self.recorder.tracker.calls.values()):
            seen = self._saved.get(call.key)
            if seen is None or seen[0] != self._signature(call) or now - seen[1] > REFRESH_S:
                self._save(call)
            elif self.shared and now - self._opened.get(call.key, 0.0) > PART_REFRESH_S:
                self._opened[call.key] = now
                self.link.do("multi", open_ops(self.keys, Keys.tag(call.key), self.probe,
                                               int(time.time() * 1000)))

    def _save(self, call: Call) -> None:
        self._saved[call.key] = (self._signature(call), time.monotonic())
        tag = Keys.tag(call.key)
        k = Keys.shard(tag)
        ops: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("set", (self.keys.call(self.probe, tag), call_to_json(call)), {"ex": CALL_TTL_S})]
        spool_key = self.spool.key(call.serial)
        if spool_key is not None:
            ops.append(("set", (self.keys.spool_key(self.probe, tag), spool_key.hex()),
                        {"ex": CALL_TTL_S}))
        ops.append(("zadd", (self.keys.live(self.probe, k), {tag: int(time.time() * 1000)}),
                    {}))
        if self.shared:  # this process records part of the call
            self._opened[call.key] = time.monotonic()
            ops += open_ops(self.keys, tag, self.probe, int(time.time() * 1000))
        if not call.remote:  # for dashboards: the call as a live list shows it
            ops.append(("xadd", (self.keys.events(k), {"type": "call", "tag": tag,
                                                       "probe": self.probe,
                                                       "call": json.dumps(live_fields(call))}),
                        {"maxlen": EVENTS_MAXLEN, "approximate": True}))
        self.link.do("multi", ops)

    def _events(self) -> None:
        calls = self.recorder.tracker.calls
        events = self.recorder.events()
        if self.shared:  # the others hear of this process's calls before their parts go
            for a in announcements(events, self.recorder.media, self.probe):
                self.link.do("xadd", self.keys.media_map, {"a": to_json(a)},
                             maxlen=MEDIA_MAP_MAXLEN, approximate=True)
        for ev in events:
            if isinstance(ev, CallEnded):
                self._ended(ev)
            elif isinstance(ev, CallMoved):  # its records under the old key go
                self.link.do("multi", self._withdrawn(ev.old_key))
                self._save(ev.call)
            elif isinstance(ev, CallStarted | MediaChanged | FlowAdded) \
                    and ev.call.key in calls:
                # flows index the spool: a restarted process needs them
                self._save(ev.call)

    def _ended(self, ev: CallEnded) -> None:
        call = ev.call
        spool = self._close_spool(call)
        record = ev.record
        if record is None:
            self.link.do("multi", self._withdrawn(call.key))
            if spool:
                self._spool_keys.pop(spool, None)
            return
        spools = [spool, *(self._close_spool(leg) for leg in record.legs)]
        if self._joiner is not None and not record.legs and not record.related \
                and not call.remote:
            # legs linked by nothing but their audio (join_by_media): the call waits
            columns = spool_columns(spool, self._spool_keys.get(spool or ""))
            for rec, parts in self._joiner.ended(record, spool, columns,
                                                 self.recorder.clock):
                self._send(rec, parts)
            return
        self._send(record, spools)

    def _close_spool(self, call: Call) -> str | None:
        path = self.spool.close_call(call.serial)
        key = self.spool.release(call.serial)
        if path and key:
            self._spool_keys[path] = key
        return path

    def _send(self, record: CallRecord, spools: list[str | None]) -> None:
        """A job for ``record`` (every leg's spool with it); the calls leave the live set."""
        keys = [self._spool_keys.pop(p, b"").hex() if p else "" for p in spools]
        k = Keys.shard(Keys.tag(record.call.key))
        job = {"record": record_to_json(record), "spool": spools[0] or "",
               "probe": self.probe, "shard": str(k)}
        if any(keys):  # sealed spools: their keys travel with the job, never on disk
            job["spool_key"] = keys[0]
        if record.legs:  # a B2BUA's legs in one recording: each leg's spool
            job["leg_spools"] = json.dumps([p or "" for p in spools[1:]])
            if any(keys):
                job["leg_spool_keys"] = json.dumps(keys[1:])
        if self.uploader is not None and any(spools):
            # the spools to the store first, the job once they are there
            objs = [f"spools/{self.probe}/{os.path.basename(p)}" if p else "" for p in spools]
            job["spool_obj"] = objs[0]
            if record.legs:
                job["leg_spool_objs"] = json.dumps(objs[1:])
            self.uploader.add([(o, p) for o, p in zip(objs, spools, strict=True) if p],
                              remove=True, then={"shard": k, "job": job,
                                                 "tag": Keys.tag(record.call.key)})
            self.link.do("multi", self._forget(record.call))
        else:
            # the job and the call leaving the live set: one step on the call's shard
            self.link.do("multi", [self._job_op(k, Keys.tag(record.call.key), job),
                                   *self._forget(record.call)])
        self.jobs_sent += 1
        for leg in record.legs:  # each on its own shard; recorded in parts, a leg has no
            self.link.do("multi", self._withdrawn(leg.key))  # part of its own here

    def _uploaded(self, then: dict[str, Any]) -> None:
        """A call's spools are stored: its job goes (from the uploader's thread), and only
        once Redis has it does the upload task (and the local spool) go; else the task is
        tried again later (a job sent twice is written once)."""
        if not self.link.up:
            raise ConnectionError("redis unreachable: the job waits with its upload task")
        op, args, kw = self._job_op(int(then["shard"]) % SHARDS, str(then.get("tag", "")),
                                    then["job"])
        self.link.do(op, *args, **kw)
        self.link.flush()
        if not self.link.up:
            raise ConnectionError("redis unreachable: the job waits with its upload task")

    def _job_op(self, k: int, tag: str, job: dict[str, Any]
                ) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """The command that hands a finished call to the writers: its job, or, recorded
        in parts, its part (the last part in makes the job)."""
        if self.shared and tag:
            return part_op(self.keys, tag, self.probe, job, int(time.time() * 1000))
        return ("xadd", (self.keys.jobs(k), job), {"maxlen": JOBS_MAXLEN, "approximate": True})

    def _forget(self, call: Call) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        """The commands that take a call out of its probe's live set (one shard)."""
        return self._forget_key(call.key)

    def _withdrawn(self, key: str) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        """``_forget_key``, and, recorded in parts, this process's part of the call handed
        in as nothing to write (the call's job is made without it)."""
        ops = self._forget_key(key)
        if self.shared:
            ops.append(part_op(self.keys, Keys.tag(key), self.probe, None,
                               int(time.time() * 1000)))
        return ops

    def _forget_key(self, key: str) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        tag = Keys.tag(key)
        self._saved.pop(key, None)
        self._opened.pop(key, None)
        return [("delete", (self.keys.call(self.probe, tag),
                            self.keys.spool_key(self.probe, tag)), {}),
                ("zrem", (self.keys.live(self.probe, Keys.shard(tag)), tag), {}),
                ("xadd", (self.keys.events(Keys.shard(tag)),
                          {"type": "call-ended", "tag": tag, "probe": self.probe}),
                 {"maxlen": EVENTS_MAXLEN, "approximate": True})]

    def _last_control(self, link: RedisLink) -> str:
        try:
            last = link.client.xrevrange(self.keys.control, count=1)
        except link._errors:  # noqa: SLF001
            return "0-0"
        return str(last[0][0].decode()) if last else "0-0"

    def read_control(self) -> None:
        """Pause and resume commands by Call-ID (``calltap pause``, agent desktops writing
        to the control stream), applied at the capture clock's now. The sender thread has
        read them; nothing here waits on Redis."""
        while self.link.commands:
            _entry_id, fields = self.link.commands.popleft()
            action = fields.get(b"action", b"").decode()
            call_id = fields.get(b"call_id", b"").decode("utf-8", "replace")
            calls = [c for c in self.recorder.tracker.calls.values() if c.call_id == call_id]
            if action not in ("pause", "resume") or not calls:
                log("capture", "control command ignored", "warning", action=action,
                    call_id=call_id, reason="no such call in progress" if calls == []
                    else "unknown action")
                continue
            now = max(time.time_ns(), max(c.last_ns for c in calls))
            for c in calls:
                set_paused(c, now, action == "pause")
            self.controls_applied += 1
            log("capture", f"recording {action}d by command", call_id=call_id)

    def check_disk(self) -> None:
        self.disk_alarm = disk_low("capture", self.spool.directory, MIN_FREE_BYTES,
                                   self.disk_alarm, "no new calls are spooled")
        # the spool's disk is nearly full: calls already recording go on, new ones are not
        self.recorder.refusing = self.disk_alarm

    def reload_policy(self) -> None:
        """Read the policy file again (SIGHUP); a file that does not load leaves the old one
        in force."""
        self.reload_requested = False
        if not self.cfg.policy:
            return
        try:
            self.recorder.set_policy(load_policy(self.cfg.policy))
        except PolicyError as exc:
            self.warnings.append(f"policy not reloaded, the previous one stays: {exc}")
            return
        self.warnings.append(f"policy reloaded from {self.cfg.policy}")

    def run(self, source: LiveSource) -> None:
        """Capture until ``stopping`` is set, then end every call as interrupted."""
        rec = self.recorder
        last_check = last_flush = 0.0
        while not self.stopping:
            batch = source.read()
            if batch:
                self.bytes_total += sum(len(p[2]) for p in batch)
                rec.feed(batch)
            else:
                # no packet for a while: time still passes for the call timers
                now_ns = time.time_ns()
                if now_ns >= rec.next_deadline():
                    rec.handle_timer(now_ns)
            if self.map is not None:
                got = self.map.got
                while got:
                    rec.announce(got.popleft())
            self._events()
            if self._joiner is not None and self._joiner.held:
                for record, parts in self._joiner.expire(rec.clock):
                    self._send(record, parts)
            if self.link.commands:  # read by the sender thread; applied at once
                self.read_control()
            now = time.monotonic()
            if now - last_flush > FLUSH_S:
                last_flush = now
                self.spool.flush_all()
                self.save_changed()
            if now - last_check > 1.0:
                last_check = now
                self.check_disk()
                if self.reload_requested:
                    self.reload_policy()
                for w in self.warnings:
                    log("capture", w, "warning")
                self.warnings.clear()
        self.finish_live()

    def finish_live(self) -> None:
        self.stopping = True
        self.recorder.stopping = True
        self.recorder.finish()
        self._events()
        if self._joiner is not None:
            for record, parts in self._joiner.flush():
                self._send(record, parts)
        self.spool.close_all()
        if self.uploader is not None:  # the rest is on disk for the next start
            self.uploader.stop(3.0)
        if self.map is not None:
            self.map.close()
        self.link.close(3.0)
        self._keep_unsent()

    @property
    def drops(self) -> Counter[str]:
        return self.recorder.all_drops()
