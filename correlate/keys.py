"""Every Redis key and stream name calltap uses, in one place. A call's keys share a hash
tag ({...}) so Redis Cluster keeps them on one shard; everything that could pile up has a
TTL or a trim bound here."""

from __future__ import annotations

import hashlib

# A live call's state outlives a capture crash this long; a call not updated for a day is
# gone (the capture process would have ended it long before).
CALL_TTL_S = 24 * 3600
# Events kept for dashboards (XADD MAXLEN ~): about a day of a busy site's recordings.
EVENTS_MAXLEN = 100_000
# Recorded calls kept in the index (ZADD, trimmed by rank): older ones stay in index.jsonl.
INDEX_MAX = 1_000_000
# Jobs kept in the stream after acknowledgement (XADD MAXLEN ~): the pending ones are
# never trimmed away because writers keep up far below this.
JOBS_MAXLEN = 100_000
WRITERS_GROUP = "writers"
# Control commands kept (XADD MAXLEN ~): each is read within a quarter second.
CONTROL_MAXLEN = 10_000
# How long a written call is remembered, to recognise a job delivered twice: far longer
# than any outage the capture process buffers through.
DONE_TTL_S = 24 * 3600


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str = "calltap") -> None:
        self.prefix = prefix
        self.jobs = f"{prefix}:jobs"
        """Stream of finished calls to write (consumer group WRITERS_GROUP)."""
        self.parked = f"{prefix}:parked"
        """Stream of jobs that failed too often, with their error."""
        self.events = f"{prefix}:events"
        """Stream of recording-ready events for dashboards."""
        self.index = f"{prefix}:index"
        """Sorted set of recorded calls by start time (member: the index line)."""
        self.probes = f"{prefix}:probes"
        """Set of the capture probes' names (one per probe the deployment runs)."""
        self.control = f"{prefix}:control"
        """Stream of commands for the capture process (pause / resume a call's recording)."""

    @staticmethod
    def tag(call_key: str) -> str:
        """A short stable tag for a call (never raw header text in a key name)."""
        return hashlib.sha256(call_key.encode("utf-8", "surrogateescape")).hexdigest()[:20]

    def live(self, probe: str) -> str:
        """Sorted set: the tags of a probe's calls in progress, scored by their last update
        (ms since the epoch). A restarted probe takes up only its own calls; members older
        than CALL_TTL_S are removed (their records expired)."""
        return f"{self.prefix}:live:{probe}"

    def call(self, probe: str, tag: str) -> str:
        """String, CALL_TTL_S: the call record (JSON) of a probe's call in progress (two
        probes seeing one dialog keep a record each)."""
        return f"{self.prefix}:call:{probe}:{{{tag}}}"

    def spool_key(self, probe: str, tag: str) -> str:
        """String (hex), CALL_TTL_S: the key of a call's sealed spool while it is recorded,
        for a restarted capture process and the dashboard's live listening; the job carries
        it on to the writer."""
        return f"{self.prefix}:spoolkey:{probe}:{{{tag}}}"

    def done(self, tag: str, start_ns: int) -> str:
        """String with DONE_TTL_S: this call (dialog tag and start) was written; a job sent
        twice across a Redis outage is written once. The call's hash tag: the same slot as
        its record."""
        return f"{self.prefix}:done:{{{tag}}}:{start_ns}"
