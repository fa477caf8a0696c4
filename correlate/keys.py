"""Every Redis key and stream name calltap uses, in one place.

A site's keys are spread over SHARDS hash tags, ``{<prefix>:s<k>}``, with ``k`` from the
call's key: a call's record, its spool key, its probe's live set, its job, its done mark,
its index entry and its events share one slot, so a state update and its job are one
atomic step, and a writer's commit is one script, on a single Redis, behind Sentinel or
on a Cluster alike. Everything that could pile up has a TTL, a trim bound or a cleanup
here."""

from __future__ import annotations

import hashlib

# A live call's state outlives a capture crash this long; a call not updated for a day is
# gone (the capture process would have ended it long before).
CALL_TTL_S = 24 * 3600
# Events kept for dashboards (XADD MAXLEN ~): about a day of a busy site's recordings.
EVENTS_MAXLEN = 100_000
# Recorded calls kept in each shard's index (ZADD of the call's id, trimmed by rank): older
# ones stay in index.jsonl.
INDEX_MAX = 200_000
# Jobs per shard past which the oldest are trimmed (XADD MAXLEN ~). Writers delete each job
# they finish, so only a backlog of days with every writer down comes near it.
JOBS_MAXLEN = 100_000
# Shards of a site's keys: a Cluster spreads them over its masters. Fixed for a site's
# lifetime, since a call's shard follows from its key.
SHARDS = 8
WRITERS_GROUP = "writers"
# Control commands kept (XADD MAXLEN ~): each is read within a quarter second.
CONTROL_MAXLEN = 10_000
# Shared media map entries kept (XADD MAXLEN ~): three or four per call, read within a
# second by every capture process; an hour of a busy site's calls.
MEDIA_MAP_MAXLEN = 200_000
# How long a written call is remembered, to recognise a job delivered twice: far longer
# than any outage the capture process buffers through.
DONE_TTL_S = 24 * 3600


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str = "calltap") -> None:
        self.prefix = prefix
        self.probes = f"{prefix}:probes"
        """Set of the capture probes' names (one per probe the deployment runs)."""
        self.control = f"{prefix}:control"
        """Stream of commands for the capture processes (pause / resume a call's recording),
        read by every probe."""
        self.media_map = f"{prefix}:mediamap"
        """Stream of the shared media map (correlate.shared announcements): where each
        call's media arrives, for the capture processes and probes that see its RTP
        without its SIP. One stream every process reads, trimmed to MEDIA_MAP_MAXLEN."""
        self.shards = range(SHARDS)

    @staticmethod
    def tag(call_key: str) -> str:
        """A short stable tag for a call (never raw header text in a key name)."""
        return hashlib.sha256(call_key.encode("utf-8", "surrogateescape")).hexdigest()[:20]

    @staticmethod
    def shard(tag: str) -> int:
        """The shard of a call, from its tag."""
        return int(tag[:8], 16) % SHARDS

    def slot(self, k: int) -> str:
        """The hash tag of shard ``k``: every key of it lands on one Cluster slot."""
        return f"{{{self.prefix}:s{k}}}"

    def jobs(self, k: int) -> str:
        """Stream of shard ``k``'s finished calls to write (consumer group WRITERS_GROUP);
        a writer deletes each job it finishes or parks."""
        return f"{self.slot(k)}:jobs"

    def parked(self, k: int) -> str:
        """Stream of shard ``k``'s jobs that failed too often, with their error."""
        return f"{self.slot(k)}:parked"

    def events(self, k: int) -> str:
        """Stream of shard ``k``'s events for dashboards (calls in progress, recordings
        ready)."""
        return f"{self.slot(k)}:events"

    def index(self, k: int) -> str:
        """Sorted set of shard ``k``'s recorded calls (their ids) by start time."""
        return f"{self.slot(k)}:index"

    def parts(self, tag: str) -> str:
        """Hash, CALL_TTL_S: a call recorded in parts (several capture processes or probes
        each saw some of it), one field per contributor: "open:<ms>" while it records
        (refreshed), then its part's job, or "none"; the last part in makes the job."""
        return f"{self.slot(self.shard(tag))}:parts:{tag}"

    def assembling(self, k: int) -> str:
        """Sorted set: tags of shard ``k``'s calls whose parts wait for a contributor still
        open, by when the last part came; writers finish those whose wait went stale (a
        contributor that died)."""
        return f"{self.slot(k)}:assembling"

    def live(self, probe: str, k: int) -> str:
        """Sorted set: the tags of a probe's calls in progress in shard ``k``, scored by
        their last update (ms since the epoch). A restarted probe takes up only its own
        calls; members older than CALL_TTL_S are removed (their records expired)."""
        return f"{self.slot(k)}:live:{probe}"

    def call(self, probe: str, tag: str) -> str:
        """String, CALL_TTL_S: the call record (JSON) of a probe's call in progress (two
        probes seeing one dialog keep a record each)."""
        return f"{self.slot(self.shard(tag))}:call:{probe}:{tag}"

    def spool_key(self, probe: str, tag: str) -> str:
        """String (hex), CALL_TTL_S: the key of a call's sealed spool while it is recorded,
        for a restarted capture process and the dashboard's live listening; the job carries
        it on to the writer."""
        return f"{self.slot(self.shard(tag))}:spoolkey:{probe}:{tag}"

    def done(self, tag: str, start_ns: int) -> str:
        """String with DONE_TTL_S: this call (dialog tag and start) was written; a job sent
        twice across a Redis outage is written once."""
        return f"{self.slot(self.shard(tag))}:done:{tag}:{start_ns}"
