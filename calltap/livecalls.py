"""Calls in progress, as the dashboard shows them: the capture process's live set and call
records in Redis, the events stream that announces changes, and packet and loss counts
read from each call's spool as the capture process appends to it."""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from calltap.catalog import Scope, in_scope
from calltap.live import live_fields
from capture.errors import CaptureError
from capture.spool import REC, open_frames
from correlate.call import Call
from correlate.keys import Keys
from correlate.record import RecordError, call_from_json
from writer.flows import assign_channels
from writer.seqnum import Extender

RTP_HEAD = struct.Struct("!BBHII")
# Calls a live list shows at most (the busiest appliance's calls in progress, with room).
MAX_LIVE = 5000
# A stream entry id, as one shard's part of an event id.
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}$")
# How long a read of the event streams waits when none has news (polled: one blocking read
# cannot span the shards of a Cluster).
EVENTS_POLL_MS = 250
# Spool bytes read per call per refresh: a refresh never stalls on a huge backlog (the
# rest is read on the next ones).
MAX_READ = 4 << 20
# Streams (flow, SSRC) counted per call: a sender changes SSRC a few times at most.
MAX_STREAMS = 64


@dataclass
class _Stream:
    seq: Extender = field(default_factory=lambda: Extender(16))
    first: int = -1
    top: int = -1
    packets: int = 0


class SpoolCounter:
    """Packets and losses per flow of one call, from its spool, read incrementally."""

    def __init__(self, path: str, key: bytes | None = None) -> None:
        self.path = path
        self.key = key
        """A sealed spool's key (its frames are opened as they land)."""
        self.offset = 0
        self.streams: dict[tuple[int, int], _Stream] = {}
        self.flow_packets: dict[int, int] = {}

    def update(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(MAX_READ)
        except OSError:
            return  # not spooled yet, or written and gone
        used = 0
        if self.key is not None:
            try:
                data, used = open_frames(data, self.key, self.path)
            except CaptureError:
                return
        pos, head = 0, REC.size
        while pos + head <= len(data):
            _ts, flow, n = REC.unpack_from(data, pos)
            if pos + head + n > len(data):
                break  # the rest of this record is not on disk yet
            self.flow_packets[flow] = self.flow_packets.get(flow, 0) + 1
            if n >= 12 and data[pos + head] >> 6 == 2:
                _b0, _b1, seq, _ts32, ssrc = RTP_HEAD.unpack_from(data, pos + head)
                st = self.streams.get((flow, ssrc))
                if st is None and len(self.streams) < MAX_STREAMS:
                    st = self.streams[(flow, ssrc)] = _Stream()
                if st is not None:
                    ext = st.seq.extend(seq)
                    st.first = ext if st.first < 0 else min(st.first, ext)
                    st.top = max(st.top, ext)
                    st.packets += 1
            pos += head + n
        self.offset += used if self.key is not None else pos

    def per_direction(self, channels: list[int]) -> tuple[list[int], list[int]]:
        """(packets, lost) of the caller's and the callee's direction."""
        packets, lost = [0, 0], [0, 0]
        for flow, n in self.flow_packets.items():
            ch = channels[flow] if flow < len(channels) else -1
            if ch in (0, 1):
                packets[ch] += n
        for (flow, _ssrc), st in self.streams.items():
            ch = channels[flow] if flow < len(channels) else -1
            if ch in (0, 1) and st.packets:
                lost[ch] += max(0, st.top - st.first + 1 - st.packets)
        return packets, lost


class LiveBoard:
    """What the dashboard knows of the calls in progress (one per server)."""

    def __init__(self, redis_url: str, prefix: str, spool_dir: str) -> None:
        import redis

        from calltap.redisconn import connect

        self.redis: Any = connect(redis_url, socket_timeout=5,
                                               socket_connect_timeout=2)
        self.errors = (redis.RedisError, OSError)
        self.keys = Keys(prefix)
        self.spool_dir = spool_dir
        self._counters: dict[str, SpoolCounter] = {}
        self._lock = threading.Lock()
        """Several pages' threads refresh the counters: one at a time."""
        self._probe_of: dict[str, str] = {}
        """Which probe each call in progress is recorded by (from the last ``calls``)."""

    def spool_path(self, tag: str, serial: int) -> str:
        """Where a call's spool is: in the spool directory, or, recorded by process ``i``
        of ``capture --procs`` (probe ``<name>.<i>``), in its subdirectory ``i``."""
        sub = self._probe_of.get(tag, "").rpartition(".")[2]
        if sub.isdigit() and os.path.isdir(os.path.join(self.spool_dir, sub)):
            return os.path.join(self.spool_dir, sub, f"{serial}.spool")
        return os.path.join(self.spool_dir, f"{serial}.spool")

    def spool_key(self, tag: str) -> bytes | None:
        """A call's sealed spool key, from the capture process (None: a plain spool)."""
        probe = self._probe_of.get(tag)
        if probe is None:
            return None
        raw = self.redis.get(self.keys.spool_key(probe, tag))
        try:
            return bytes.fromhex(raw.decode()) if raw else None
        except ValueError:
            return None

    def calls(self) -> dict[str, Call]:
        """Every call in progress of every probe, by tag."""
        probes = sorted(p.decode() for p in self.redis.smembers(self.keys.probes))
        pipe = self.redis.pipeline(transaction=False)
        where = [(p, k) for p in probes for k in self.keys.shards]
        for p, k in where:
            pipe.zrange(self.keys.live(p, k), 0, -1)
        found = sorted({(t.decode(), p) for (p, _k), tags in zip(where, pipe.execute(),
                                                                  strict=True)
                        for t in tags})[:MAX_LIVE]
        if not found:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for t, p in found:
            pipe.get(self.keys.call(p, t))
        raws = pipe.execute()
        out: dict[str, Call] = {}
        probe_of: dict[str, str] = {}
        for (tag, probe), raw in zip(found, raws, strict=True):
            if raw is None:
                continue
            try:
                call = call_from_json(raw)
            except RecordError:
                continue
            if tag in out and (call.remote or not out[tag].remote):
                continue  # a call recorded in parts: the view with its signalling
            out[tag], probe_of[tag] = call, probe
        self._probe_of = probe_of
        return out

    def row(self, tag: str, call: Call, fields: dict[str, Any] | None = None
            ) -> dict[str, Any]:
        """A live call as the list shows it (``fields``: its live_fields, if known), with
        its counts so far."""
        fields = fields or live_fields(call)
        with self._lock:
            counter = self._counters.get(tag)
            if counter is None:
                counter = self._counters[tag] = SpoolCounter(self.spool_path(tag, call.serial),
                                                             self.spool_key(tag))
            counter.update()
            packets, lost = counter.per_direction(assign_channels(call.flows))
        return {"tag": tag, **fields, "packets": packets, "lost": lost}

    def rows(self, scope: Scope | None) -> list[dict[str, Any]]:
        calls = self.calls()
        with self._lock:
            for gone in set(self._counters) - set(calls):
                del self._counters[gone]
        # the user's calls only: another's spool is never read for them
        seen = ((tag, c, live_fields(c)) for tag, c in calls.items())
        return [self.row(tag, c, f) for tag, c, f in seen if visible(f, scope)]

    def last_event_id(self) -> str:
        """Where the event streams end now: one position per shard, as an event id
        (``<id of shard 0>,<id of shard 1>,...``)."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.keys.shards:
            pipe.xrevrange(self.keys.events(k), count=1)
        return ",".join(last[0][0].decode() if last else "0-0" for last in pipe.execute())

    def _positions(self, after: str) -> list[str]:
        ids = after.split(",")
        if len(ids) != len(self.keys.shards) or not all(STREAM_ID.match(i) for i in ids):
            return self.last_event_id().split(",")  # an unknown position: from now on
        return ids

    def events(self, after: str, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        """The events of every shard after ``after`` (see last_event_id), each with the
        position after it; waits up to ``block_ms`` when there are none."""
        ids = self._positions(after)

        def read() -> list[Any]:
            # a read per shard (in one round trip): one command cannot span a Cluster's slots
            pipe = self.redis.pipeline(transaction=False)
            for k in self.keys.shards:
                pipe.xread({self.keys.events(k): ids[k]}, count=500)
            return [x for x in pipe.execute() if x]

        got = read()
        if not got and block_ms:
            time.sleep(min(block_ms, EVENTS_POLL_MS) / 1000)
            got = read()
        out: list[tuple[str, dict[str, str]]] = []
        shard_of = {self.keys.events(k): k for k in self.keys.shards}
        for stream, entries in (item for x in got for item in x):
            k = shard_of[stream.decode() if isinstance(stream, bytes) else stream]
            for eid, fields in entries:
                ids[k] = eid.decode()
                out.append((",".join(ids), {f.decode(): v.decode("utf-8", "replace")
                                            for f, v in fields.items()}))
        return out


def visible(fields: dict[str, Any], scope: Scope | None) -> bool:
    return in_scope(scope, fields.get("caller") or "", fields.get("callee") or "",
                    fields.get("addrs") or [], fields.get("group") or "")


def event_call(fields: dict[str, str]) -> dict[str, Any]:
    """The call of a ``call`` event (an empty dict if it does not parse)."""
    try:
        data = json.loads(fields.get("call") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
