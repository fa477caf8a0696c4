"""`calltap capture`: the import core on a live interface. Calls in progress are kept in
Redis (a restarted capture process takes them up again), each call's packets go to its
spool file, and a finished call becomes a job on the Redis stream the writers read.

When Redis cannot be reached, state changes and jobs wait in a bounded queue and are sent
once it is back (with backoff); packets keep being spooled meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import deque
from dataclasses import replace
from typing import Any

from calltap.config import Config
from calltap.importer import Importer
from calltap.log import disk_low, log
from capture.live import LiveSource
from correlate.call import Call
from correlate.events import CallFinished, CallStarted, Event, MediaChanged
from correlate.keys import CALL_TTL_S, JOBS_MAXLEN, Keys
from correlate.policy import Decision, set_paused
from correlate.record import (
    RecordError,
    call_from_json,
    call_to_json,
    finished,
    record_to_json,
)

NS = 1_000_000_000
# Redis operations waiting while Redis is unreachable: each is a call record or a job of a
# few KiB; a minute of a 1,000-call site's changes fits. Past it the oldest state updates
# go (jobs are kept first: a lost state update is refreshed by the next).
MAX_PENDING_OPS = 20_000
# Reconnection backoff after a Redis error: doubling from the first to the last.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 5.0
# Jobs not handed to Redis when the process stopped, in the spool directory.
UNSENT_JOBS = "unsent-jobs.jsonl"
# Spool buffers are written, and changed calls stored, this often: a crash of the capture
# process loses at most this much before the outage itself.
FLUSH_S = 0.25
# Below this free space on the spool's file system, no new call gets a spool (active calls
# keep recording) and an alarm is raised.
MIN_FREE_BYTES = 256 * 1024 * 1024


class RedisLink:
    """Redis commands that survive an outage: sent at once when possible, otherwise queued
    (bounded) and replayed in order after a reconnection."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._errors = (redis.RedisError, OSError)
        self.pending: deque[tuple[str, tuple[Any, ...], dict[str, Any]]] = deque()
        self.dropped = 0
        self.up = True
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST_S

    @property
    def client(self) -> Any:
        return self._redis

    def do(self, op: str, *args: Any, **kw: Any) -> None:
        """Run a command now, or queue it for when Redis is back."""
        if len(self.pending) >= MAX_PENDING_OPS:
            for k, item in enumerate(self.pending):
                if item[0] != "xadd":  # a state update: the next one refreshes it
                    del self.pending[k]
                    break
            else:
                self.pending.popleft()
            self.dropped += 1
        self.pending.append((op, args, kw))
        self.flush()

    def flush(self) -> None:
        if not self.pending or time.monotonic() < self._retry_at:
            return
        try:
            while self.pending:
                op, args, kw = self.pending[0]
                getattr(self._redis, op)(*args, **kw)
                self.pending.popleft()
            if not self.up:
                log("capture", "redis reachable again", dropped_ops=self.dropped)
            self.up, self._backoff = True, BACKOFF_FIRST_S
        except self._errors as exc:
            if self.up:
                log("capture", "redis unreachable; queueing", "warning", error=str(exc))
            self.up = False
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)


class LiveCapture(Importer):
    """The importer's capture and correlation, with Redis for state and jobs."""

    def __init__(self, cfg: Config, redis_url: str, spool_dir: str, source_name: str,
                 prefix: str = "calltap") -> None:
        os.makedirs(spool_dir, exist_ok=True)
        super().__init__(replace(cfg, out=spool_dir, jobs=1, progress=False))
        from capture.spool import SpoolSet

        self.spool = SpoolSet(spool_dir)
        self.keys = Keys(prefix)
        self.link = RedisLink(redis_url)
        self._source = source_name
        self.stopping = False
        self.jobs_sent = 0
        self.bytes_total = 0
        self.disk_alarm = False
        self.not_spooled_disk = 0
        self._saved: dict[str, tuple[int, ...]] = {}
        """Per live call, what it looked like when last stored (to store only changes)."""
        # serials name spool files: never reuse one a writer may still be reading
        self.tracker.start_serials_at(time.time_ns() // 1_000_000)
        self.restored = self._restore()
        self._resend_unsent()
        self.control_id = self._last_control()
        """Last control command read; commands sent while no capture ran are not replayed
        (a pause is a decision about audio flowing now)."""
        self.controls_applied = 0

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
                except ValueError:
                    continue
                self.link.do("xadd", self.keys.jobs, fields, maxlen=JOBS_MAXLEN,
                             approximate=True)
        os.unlink(path)

    def _keep_unsent(self) -> None:
        """At exit with Redis unreachable: the jobs go to a file the next start sends, so a
        finished call is never lost (its spool file is on the same disk)."""
        jobs = [args[1] for op, args, _kw in self.link.pending if op == "xadd"]
        if not jobs:
            return
        with open(self._unsent_path(), "a", encoding="utf-8") as f:
            for fields in jobs:
                f.write(json.dumps(fields) + "\n")
        log("capture", "redis unreachable at exit: jobs kept for the next start", "warning",
            jobs=len(jobs), file=self._unsent_path())

    def _restore(self) -> int:
        """Take up the calls a previous capture process had in progress."""
        r = self.link.client
        try:
            tags = r.smembers(self.keys.live)
            records = [r.get(self.keys.call(t.decode())) for t in tags]
        except self.link._errors:  # noqa: SLF001 - Redis down at start: nothing to restore
            return 0
        n = 0
        for raw in records:
            if raw is None:
                continue
            try:
                call = call_from_json(raw)
            except RecordError:
                continue
            self.tracker.restore(call)
            self.calls_found += 1
            n += 1
        return n

    @staticmethod
    def _signature(call: Call) -> tuple[int, ...]:
        return (call.sip_messages, call.state, len(call.flows), len(call.pauses),
                call.pauses[-1][1] if call.pauses else -1, sum(len(o) for o in call.offers),
                call.answer_ns)

    def save_changed(self) -> None:
        """Store the calls whose dialog, media or pauses changed since they were stored."""
        for call in list(self.tracker.calls.values()):
            if self._saved.get(call.key) != self._signature(call):
                self._save(call)

    def _save(self, call: Call) -> None:
        self._saved[call.key] = self._signature(call)
        tag = Keys.tag(call.key)
        self.link.do("set", self.keys.call(tag), call_to_json(call), ex=CALL_TTL_S)
        self.link.do("sadd", self.keys.live, tag)

    def _events(self, events: list[Event]) -> None:
        if self.disk_alarm:
            for ev in events:
                if isinstance(ev, CallStarted):
                    # the spool's disk is nearly full: calls already recording go on, new
                    # ones get no spool
                    ev.call.decision = Decision("disk-full", record=False)
                    self.not_spooled_disk += 1
        super()._events(events)
        for ev in events:
            if isinstance(ev, CallStarted | MediaChanged) and ev.call.key in self.tracker.calls:
                self._save(ev.call)

    def _new_flow(self, call: Call, pair: Any) -> int:
        flow = super()._new_flow(call, pair)
        self._save(call)  # flows index the spool: a restarted process needs them
        return flow

    def _write(self, ev: CallFinished) -> None:
        call = ev.call
        if self.stopping and call.end_reason == "end-of-input":
            # still in progress when the appliance stopped (RFC 3261's dialog never ended)
            call.status, call.end_reason = "interrupted", "interrupted"
        spool = self.spool.close_call(call.serial)
        tag = Keys.tag(call.key)
        if not call.responded and spool is None and not call.flows:
            self.drops["unanswered_invite_not_recorded"] += 1
        else:
            record = finished(call, self.policy.identity)
            self.link.do("xadd", self.keys.jobs, {"record": record_to_json(record),
                                                  "spool": spool or ""},
                         maxlen=JOBS_MAXLEN, approximate=True)
            self.jobs_sent += 1
        self.link.do("delete", self.keys.call(tag))
        self.link.do("srem", self.keys.live, tag)
        self._saved.pop(call.key, None)

    def _last_control(self) -> str:
        try:
            last = self.link.client.xrevrange(self.keys.control, count=1)
        except self.link._errors:  # noqa: SLF001
            return "0-0"
        return str(last[0][0].decode()) if last else "0-0"

    def read_control(self) -> None:
        """Pause and resume commands by Call-ID (``calltap pause``, agent desktops writing
        to the control stream), applied at the capture clock's now."""
        try:
            got = self.link.client.xread({self.keys.control: self.control_id}, count=100)
        except self.link._errors:  # noqa: SLF001 - Redis down: commands wait in the stream
            return
        for _stream, entries in got or []:
            for entry_id, fields in entries:
                self.control_id = entry_id.decode()
                action = fields.get(b"action", b"").decode()
                call_id = fields.get(b"call_id", b"").decode("utf-8", "replace")
                calls = [c for c in self.tracker.calls.values() if c.call_id == call_id]
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

    def run(self, source: LiveSource) -> None:
        """Capture until ``stopping`` is set, then end every call as interrupted."""
        last_check = last_flush = 0.0
        while not self.stopping:
            batch = source.read()
            if batch:
                b = _Batch(batch)
                self.bytes_total += b.bytes_read
                self._run(b)
            else:
                # no packet for a while: time still passes for the call timers
                self._events(self.tracker.handle_timer(time.time_ns()))
            now = time.monotonic()
            if now - last_flush > FLUSH_S:
                last_flush = now
                self.read_control()
                self.spool.flush_all()
                self.save_changed()
            if now - last_check > 1.0:
                last_check = now
                self.link.flush()
                self.check_disk()
                if self.reload_requested:
                    self.reload_policy()
                for w in self.warnings:
                    log("capture", w, "warning")
                self.warnings.clear()
        self.finish_live()

    def finish_live(self) -> None:
        self.stopping = True
        self._events(self.tracker.finish())
        deadline = time.monotonic() + 3.0
        while self.link.pending and time.monotonic() < deadline:
            self.link.flush()
            time.sleep(0.05)
        self._keep_unsent()
        shutil.rmtree(self._spool_dir, ignore_errors=True)  # the importer's, unused here


class _Batch:
    """A list of packets in the shape the importer's loop reads."""

    def __init__(self, packets: list[tuple[int, int, bytes]]) -> None:
        self.packets = packets
        self.bytes_read = sum(len(p[2]) for p in packets)
        self.truncated = False

    def __iter__(self) -> Any:
        return iter(self.packets)
