"""Calls recorded in parts, on a real redis-server: the last part in makes one job with
every part; a contributor still open holds the job back until it hands its part in or
goes stale (then a writer's sweep makes the job without it); parts with nothing to write
make no job."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import redis

from calltap.parts import PART_STALE_S, open_ops, part_op, sweep
from correlate.keys import Keys

KEYS = Keys()
TAG = Keys.tag("call-1\x00tag")
K = Keys.shard(TAG)
NOW = 1_800_000_000_000


def _run(r: Any, ops: list[Any]) -> list[Any]:
    pipe = r.pipeline(transaction=True)
    for op, args, kw in ops:
        getattr(pipe, op)(*args, **kw)
    return list(pipe.execute())


def _jobs(r: Any) -> list[list[dict[str, Any]]]:
    return [json.loads(f[b"parts"]) for _id, f in r.xrange(KEYS.jobs(K))]


def test_the_last_part_in_makes_the_job(redis_url: tuple[str, subprocess.Popen[bytes]]
                                        ) -> None:
    r = redis.Redis.from_url(redis_url[0])
    _run(r, open_ops(KEYS, TAG, "a", NOW) + open_ops(KEYS, TAG, "b", NOW))
    assert r.ttl(KEYS.parts(TAG)) > 0
    assert _run(r, [part_op(KEYS, TAG, "a", {"spool": "/s/a"}, NOW + 1000)]) == [0]
    assert _jobs(r) == [] and r.zscore(KEYS.assembling(K), TAG) == NOW + 1000
    assert _run(r, [part_op(KEYS, TAG, "b", {"spool": "/s/b"}, NOW + 2000)]) == [1]
    (job,) = _jobs(r)
    assert sorted(p["spool"] for p in job) == ["/s/a", "/s/b"]
    assert not r.exists(KEYS.parts(TAG)) and r.zcard(KEYS.assembling(K)) == 0


def test_nothing_to_write_makes_no_job(redis_url: tuple[str, subprocess.Popen[bytes]]
                                       ) -> None:
    r = redis.Redis.from_url(redis_url[0])
    _run(r, open_ops(KEYS, TAG, "a", NOW) + open_ops(KEYS, TAG, "b", NOW))
    assert _run(r, [part_op(KEYS, TAG, "a", None, NOW)]) == [0]
    assert _run(r, [part_op(KEYS, TAG, "b", None, NOW)]) == [2]
    assert _jobs(r) == [] and not r.exists(KEYS.parts(TAG))


def test_a_dead_contributor_is_waited_for_until_stale(
        redis_url: tuple[str, subprocess.Popen[bytes]]) -> None:
    r = redis.Redis.from_url(redis_url[0])
    _run(r, open_ops(KEYS, TAG, "a", NOW) + open_ops(KEYS, TAG, "dead", NOW))
    assert _run(r, [part_op(KEYS, TAG, "a", {"spool": "/s/a"}, NOW + 1000)]) == [0]
    stale_ms = int(PART_STALE_S * 1000)
    assert sweep(r, KEYS, NOW + 1000 + stale_ms // 2) == 0  # not yet: the wait is young
    assert _jobs(r) == []
    # the dead one's mark dates from NOW; the sweep looks once the wait itself went stale
    assert sweep(r, KEYS, NOW + 1000 + stale_ms) == 1
    (job,) = _jobs(r)
    assert [p["spool"] for p in job] == ["/s/a"]
    assert r.zcard(KEYS.assembling(K)) == 0


def test_a_live_contributor_refreshing_its_mark_is_not_swept(
        redis_url: tuple[str, subprocess.Popen[bytes]]) -> None:
    r = redis.Redis.from_url(redis_url[0])
    _run(r, open_ops(KEYS, TAG, "a", NOW) + open_ops(KEYS, TAG, "b", NOW))
    assert _run(r, [part_op(KEYS, TAG, "a", {"spool": "/s/a"}, NOW)]) == [0]
    later = NOW + int(PART_STALE_S * 1000) + 5000
    _run(r, open_ops(KEYS, TAG, "b", later - 1000))  # b still records (a long tail)
    assert sweep(r, KEYS, later) == 0 and _jobs(r) == []
    assert _run(r, [part_op(KEYS, TAG, "b", {"spool": "/s/b"}, later + 100)]) == [1]
    assert len(_jobs(r)[0]) == 2
