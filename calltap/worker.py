"""`calltap writer`: takes finished calls from the Redis job stream (consumer group), writes
each exactly as import would, adds it to the Redis index and publishes a recording-ready
event. A job a dead writer held is claimed by another after CLAIM_IDLE_MS; a job that
failed MAX_ATTEMPTS times is parked with its error instead of being retried for ever.

Files appear under their final names only when complete (write, then rename), and a job is
acknowledged only after that, so a crash at any point leaves either nothing visible or the
finished call, and the job in the stream for the next writer.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import re
import socket
import sqlite3
import threading
import time
from dataclasses import replace
from typing import Any

from calltap.catalog import (
    CatalogError,
    SqliteCatalog,
    call_key,
    open_catalog,
)
from calltap.heap import keep_freed_blocks
from calltap.log import disk_low, log
from calltap.objects import WriterStorage
from calltap.parts import PART_STALE_S, sweep
from correlate.keys import DONE_TTL_S, EVENTS_MAXLEN, INDEX_MAX, WRITERS_GROUP, Keys
from correlate.record import RecordError, record_from_json
from writer import translog
from writer.columns import SealedSpool
from writer.job import Media, write_call
from writer.options import WriteOptions
from writer.storage import S3Store
from writer.timefmt import rfc3339
from writer.timestamps import TimestampError, stamp_new

# A job held this long by a writer that stopped answering is taken by another: longer than
# the longest call a writer takes to write (an hour of audio takes seconds).
CLAIM_IDLE_MS = 30_000
# Attempts before a job is parked: a call that breaks the writer three times will again.
MAX_ATTEMPTS = 3
# How long a read waits on one shard when no shard has a job, before the loop checks for
# stop and sweeps the shards again (a job on another shard waits at most this long).
BLOCK_MS = 100
# Below this free space on the output's file system no job is taken (they wait in the
# stream) and an alarm is raised; taking them would only fail half-way.
MIN_FREE_BYTES = 512 * 1024 * 1024
# An idle writer signs a checkpoint of the log's new entries at most this often.
CHECKPOINT_IDLE_S = 5.0
# How long a stopping writer waits for its queued uploads (the rest go at its next start).
UPLOAD_DRAIN_S = 10.0
# Parked jobs kept (XADD MAXLEN ~): an operator reads them long before this many pile up.
PARKED_MAXLEN = 10_000
# The commit of a written call, one atomic step: unless the call is done already, mark it
# done, index it, announce it; either way acknowledge and delete the job. 1 if committed.
COMMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
  redis.call('XDEL', KEYS[2], ARGV[1])
  return 0
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[6]) - 1)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', unpack(ARGV, 8))
redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
return 1
"""


class Heartbeat:
    """While a job is written: its claim renewed every third of the claim timeout from a
    thread, so a long write is never taken over by a second writer."""

    def __init__(self, worker: Worker, job_id: str) -> None:
        self.worker, self.job_id = worker, job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        every = self.worker.claim_idle_ms / 3000
        while not self._stop.wait(every):
            try:
                self.worker.heartbeat(self.job_id)
            except self.worker.errors as exc:
                log("writer", "claim not renewed", "warning", job=self.job_id,
                    error=str(exc))

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    def __init__(self, redis_url: str, out_dir: str, options: WriteOptions,
                 prefix: str = "calltap", name: str = "", claim_idle_ms: int = CLAIM_IDLE_MS,
                 store: S3Store | None = None, catalog_url: str = "") -> None:
        import redis

        from calltap.redisconn import connect

        self.r: Any = connect(redis_url, socket_timeout=10,
                                           socket_connect_timeout=2)
        self.errors = (redis.RedisError, OSError)
        self.keys = Keys(prefix)
        self.out = out_dir
        self.options = options
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms = claim_idle_ms
        self.stopping = False
        self._checkpoint_at = 0.0
        self.written = 0
        self.parked = 0
        self.failed = 0
        self.duplicates = 0
        self.disk_alarm = False
        self._catalog: SqliteCatalog | None = None
        self.catalog_url = catalog_url
        self._commit = self.r.register_script(COMMIT)
        self._turn = 0
        """Which shard the next read starts at (each in turn: none is starved)."""
        self._claim_at = 0.0
        self._sweep_at = 0.0
        """When next to look for calls whose parts wait for a contributor gone (monotonic)."""
        """When next to look for jobs a dead writer held (monotonic)."""
        self.storage = WriterStorage(store, out_dir, re.sub(r"[^A-Za-z0-9._-]", "-",
                                                            self.name)) if store else None
        """Object storage: spools fetched from it, recordings and index segments to it."""

    def ensure_group(self) -> None:
        for k in self.keys.shards:
            try:
                self.r.xgroup_create(self.keys.jobs(k), WRITERS_GROUP, id="0", mkstream=True)
            except Exception as exc:  # noqa: BLE001 - BUSYGROUP: it exists already
                if "BUSYGROUP" not in str(exc):
                    raise

    @staticmethod
    def _where(job_id: str) -> tuple[int, str]:
        """(shard, stream entry id) of a job id ``<shard>/<entry id>``."""
        k, _, entry = job_id.partition("/")
        return int(k), entry

    def next_job(self) -> tuple[str, dict[bytes, bytes]] | None:
        """A stale job of a dead writer first, else a new one from the shards in turn
        (one job at a time, so none waits behind this writer); waits up to BLOCK_MS on one
        shard when none has any. The id is ``<shard>/<entry id>``."""
        shards = list(self.keys.shards)
        first = self._turn % len(shards)
        self._turn += 1
        order = shards[first:] + shards[:first]
        if time.monotonic() >= self._claim_at:  # a dead writer's jobs, now and then
            self._claim_at = time.monotonic() + self.claim_idle_ms / 3000
            for k in order:
                claimed = self.r.xautoclaim(self.keys.jobs(k), WRITERS_GROUP, self.name,
                                            self.claim_idle_ms, "0-0", count=1)
                if claimed and claimed[1] and claimed[1][0][1]:
                    job_id, fields = claimed[1][0]
                    return f"{k}/{job_id.decode()}", fields
        for k in order:
            if (job := self._read(k)) is not None:
                return job
        return self._read(first, BLOCK_MS)

    def _read(self, k: int, block_ms: int | None = None
              ) -> tuple[str, dict[bytes, bytes]] | None:
        """A new job of shard ``k``, if one waits (or comes within ``block_ms``)."""
        got = self.r.xreadgroup(WRITERS_GROUP, self.name, {self.keys.jobs(k): ">"},
                                count=1, block=block_ms)
        if got and got[0][1]:
            job_id, fields = got[0][1][0]
            return f"{k}/{job_id.decode()}", fields
        return None

    def attempts(self, job_id: str) -> int:
        k, entry = self._where(job_id)
        info = self.r.xpending_range(self.keys.jobs(k), WRITERS_GROUP, entry, entry, 1)
        return int(info[0]["times_delivered"]) if info else 1

    def handle(self, job_id: str, fields: dict[bytes, bytes]) -> None:
        attempts = self.attempts(job_id)
        if attempts > MAX_ATTEMPTS:
            self._park(job_id, fields, "failed too many times")
            return
        fetched: list[str] = []
        objs: list[str] = []
        local: list[str] = []
        try:
            # a call recorded in parts (capture processes, probes): each part a job's fields
            jobs = [{str(k).encode(): str(v).encode() for k, v in d.items()}
                    for d in json.loads(fields[b"parts"])] if b"parts" in fields else [fields]
            records = [record_from_json(j.get(b"record") or j[b"call"]) for j in jobs]
            main = min(range(len(records)), key=lambda i: (
                records[i].call.remote != "", -records[i].call.sip_messages,
                records[i].call.start_ns))
            record = records[main]
            call = record.call
            done = self.keys.done(Keys.tag(call.key), call.start_ns)
            if self.r.exists(done):
                # the same job again: a capture resent it after a Redis outage
                if len(jobs) == 1 and b"parts" in fields:
                    log("writer", "a part came after its call was written", "warning",
                        call_id=call.call_id)
                self._ack(job_id)
                self.duplicates += 1
                return
            medias: list[list[Media]] = []
            for j in jobs:
                media = self._media_of(j, fetched, objs, local)
                if isinstance(media, str):
                    self._park(job_id, fields, media)
                    return
                medias.append(media)
            options = replace(self.options, retry=True) if attempts > 1 else self.options
            with Heartbeat(self, job_id):  # the claim stays ours while the call is written
                entry, _drops, search = write_call(record, medias[main], self.out, options,
                                           parts=[(records[i], medias[i])
                                                  for i in range(len(jobs)) if i != main])
        except (RecordError, KeyError, ValueError) as exc:
            self._park(job_id, fields, f"unreadable job: {exc}")
            return
        except Exception:  # noqa: BLE001 - left pending: another attempt, then parked
            self.failed += 1
            raise
        start = calendar.timegm(time.strptime(entry["start"][:19], "%Y-%m-%dT%H:%M:%S"))
        self._index(entry, search)  # searchable before the event announces it
        tag = Keys.tag(record.call.key)
        event = {"type": "recording-ready", "call_id": entry["call_id"],
                 "summary": entry["summary"], "id": call_key(entry), "tag": tag}
        k, entry_id = self._where(job_id)  # the call's shard: its done mark's too
        committed = self._commit(keys=[done, self.keys.jobs(k), self.keys.index(k),
                                       self.keys.events(k)],
                                 args=[entry_id, WRITERS_GROUP, DONE_TTL_S, call_key(entry),
                                       start, INDEX_MAX, EVENTS_MAXLEN,
                                       *(x for kv in event.items() for x in kv)])
        if not committed:  # another writer finished the same call first (a resent job)
            self.duplicates += 1
            for path in fetched:
                os.unlink(path)
            return
        self.written += 1
        log("writer", "recording ready", call_id=entry["call_id"], summary=entry["summary"],
            parts=len(jobs))
        if self.storage is not None:
            self.storage.written(entry, json.dumps(entry, sort_keys=True))
            for obj in objs:
                if obj:  # the recording is made: the stored spool is not needed
                    try:
                        self.storage.store.delete(obj)
                    except Exception as exc:  # noqa: BLE001 - the call is written: report
                        log("writer", "stored spool not deleted", "warning", spool=obj,
                            error=str(exc)[:200])
        for path in (*local, *fetched):
            if path and os.path.exists(path):
                os.unlink(path)

    def _media_of(self, job: dict[bytes, bytes], fetched: list[str], objs: list[str],
                  local: list[str]) -> list[Media] | str:
        """A job's media: its spool and its legs' (fetched from object storage when the
        probe stored them there), each sealed one with its key; or why it cannot be had.
        Adds to the spools ``fetched``, the stored objects ``objs`` and the local spool
        files ``local`` (all removed once the call is written)."""
        spool = job.get(b"spool", b"").decode() or None
        # a B2BUA's legs joined: the other legs' spools too
        legs = [p or None for p in json.loads(job.get(b"leg_spools") or b"[]")]
        mine = [job.get(b"spool_obj", b"").decode(),
                *json.loads(job.get(b"leg_spool_objs") or b"[]")]
        if any(mine) and self.storage is not None:  # the probe stored its spools
            got = [self.storage.fetch(o) if o else None for o in mine]
            fetched += [p for p in got if p]
            objs += [o for o in mine if o]
            spool, legs = got[0], got[1:] + legs[len(got) - 1:]
        else:
            local += [p for p in (spool, *legs) if p]
        for path in (spool, *legs):
            if path and not os.path.exists(path):
                # on another host without the shared spool, or deleted: never write a
                # call as if it had no media
                return f"spool file missing: {path}"
        # sealed spools: the job carries each one's key (hex; empty for a plain spool)
        keys = [job.get(b"spool_key", b"").decode(),
                *json.loads(job.get(b"leg_spool_keys") or b"[]")]
        return [SealedSpool(p, bytes.fromhex(k)) if p and k else p
                for p, k in zip((spool, *legs), keys + [""] * len(legs), strict=False)]

    def _index(self, entry: dict[str, Any], search: dict[str, Any]) -> None:
        """The call into the catalog (searchable at once); a catalog that cannot be
        written is reported and left to `calltap catalog rebuild`, never fails the job."""
        try:
            if self._catalog is None:
                self._catalog = open_catalog(self.out, self.catalog_url)
            self._catalog.add(entry, search)
        except (sqlite3.Error, CatalogError) as exc:
            log("writer", "catalog not updated", call_id=entry["call_id"], error=str(exc))
            if self.catalog_url and self._catalog is not None:  # a server: connect anew
                with contextlib.suppress(Exception):
                    self._catalog.close()
                self._catalog = None

    def _ack(self, job_id: str) -> None:
        """Done with a job: acknowledged and deleted (the stream keeps only pending jobs)."""
        k, entry = self._where(job_id)
        pipe = self.r.pipeline()
        pipe.xack(self.keys.jobs(k), WRITERS_GROUP, entry)
        pipe.xdel(self.keys.jobs(k), entry)
        pipe.execute()

    def heartbeat(self, job_id: str) -> None:
        """The job's idle time back to zero, so no other writer claims it (JUSTID: the
        delivery count stays)."""
        k, entry = self._where(job_id)
        self.r.xclaim(self.keys.jobs(k), WRITERS_GROUP, self.name, 0, [entry], justid=True)

    def _park(self, job_id: str, fields: dict[bytes, bytes], why: str) -> None:
        k, entry = self._where(job_id)
        pipe = self.r.pipeline()
        pipe.xadd(self.keys.parked(k), {**fields, b"error": why.encode(), b"job": entry},
                  maxlen=PARKED_MAXLEN, approximate=True)
        pipe.xack(self.keys.jobs(k), WRITERS_GROUP, entry)
        pipe.xdel(self.keys.jobs(k), entry)
        pipe.execute()
        self.parked += 1
        log("writer", "job parked", "error", job=job_id, error=why)

    def out_of_space(self) -> bool:
        os.makedirs(self.out, exist_ok=True)
        self.disk_alarm = disk_low("writer", self.out, MIN_FREE_BYTES, self.disk_alarm,
                                   "jobs wait in the queue")
        return self.disk_alarm

    def run(self) -> None:
        keep_freed_blocks()
        ready = False
        while not self.stopping:
            try:
                if not ready:
                    self.ensure_group()
                    ready = True
                if self.out_of_space():
                    time.sleep(1.0)
                    continue
                if time.monotonic() >= self._sweep_at:  # calls waiting for a dead part
                    self._sweep_at = time.monotonic() + PART_STALE_S / 4
                    if made := sweep(self.r, self.keys, int(time.time() * 1000)):
                        log("writer", "calls written without a part that never came",
                            "warning", calls=made)
                job = self.next_job()
                if job is None:
                    self._checkpoint()
                    if self.storage is not None:
                        self.storage.rotate()
                if job is not None:
                    try:
                        self.handle(*job)
                    except self.errors:
                        raise
                    except Exception as exc:  # noqa: BLE001 - one bad call, not the writer
                        log("writer", "job failed; it will be retried", "error", job=job[0],
                            error=str(exc))
            except self.errors as exc:
                ready = False
                log("writer", "redis unreachable; retrying", "warning", error=str(exc))
                time.sleep(1.0)
        self._checkpoint(force=True)
        if self.storage is not None:  # what is not stored yet stays queued on disk
            self.storage.close(UPLOAD_DRAIN_S)

    def _checkpoint(self, force: bool = False) -> None:
        """While idle (at most every CHECKPOINT_IDLE_S) and when stopping: the log's newest
        entries under a signed checkpoint."""
        now = time.time()
        if not self.options.signing_key or (not force
                                            and now - self._checkpoint_at < CHECKPOINT_IDLE_S):
            return
        self._checkpoint_at = now
        translog.checkpoint(self.out, self.options.signing_key, rfc3339(int(now * 1e9)), now)
        if self.options.tsa_url:  # every checkpoint stamped by an outside authority
            try:
                stamp_new(self.out, self.options.tsa_url)
            except TimestampError as exc:
                log("writer", "checkpoint not timestamped yet", "warning", error=str(exc))
