"""Calls recorded in parts: several capture processes (AF_PACKET fanout) or probes (two
sites) each record what they see of a call and say so in the call's parts hash; the last
part in turns them into one job, atomically on the call's shard, and writers join the parts
into one recording. A contributor that died is waited for PART_STALE_S at most."""

from __future__ import annotations

import json
from typing import Any

from correlate.keys import CALL_TTL_S, JOBS_MAXLEN, Keys

# A contributor's "open" mark is refreshed this often while it records the call...
PART_REFRESH_S = 15.0
# ...and one not refreshed for this long is taken for dead: the call is written without it.
PART_STALE_S = 60.0

# KEYS: parts hash, jobs stream, assembling set. ARGV: contributor ('' to only look),
# value, now (ms), stale (ms), jobs maxlen, shard, tag, ttl (s).
# Returns 0 (a contributor is still open), 1 (the job was made) or 2 (no part to write).
PART_SCRIPT = """
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local all = redis.call('HGETALL', KEYS[1])
local parts = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  if string.sub(v, 1, 5) == 'open:' then
    if tonumber(ARGV[3]) - tonumber(string.sub(v, 6)) < tonumber(ARGV[4]) then
      redis.call('EXPIRE', KEYS[1], ARGV[8])
      redis.call('ZADD', KEYS[3], ARGV[3], ARGV[7])
      return 0
    end
  elseif v ~= 'none' then
    parts[#parts + 1] = v
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[7])
if #parts == 0 then return 2 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
           'parts', '[' .. table.concat(parts, ',') .. ']', 'shard', ARGV[6])
return 1
"""

Op = tuple[str, tuple[Any, ...], dict[str, Any]]


def part_op(keys: Keys, tag: str, contributor: str, job: dict[str, Any] | None,
            now_ms: int) -> Op:
    """The command that hands in ``contributor``'s part of call ``tag`` (its job, or None
    for nothing to write) and makes the call's job if it was the last."""
    k = Keys.shard(tag)
    value = json.dumps(job, separators=(",", ":")) if job is not None else "none"
    return ("eval", (PART_SCRIPT, 3, keys.parts(tag), keys.jobs(k), keys.assembling(k),
                     contributor, value, now_ms, int(PART_STALE_S * 1000), JOBS_MAXLEN, k,
                     tag, CALL_TTL_S), {})


def open_ops(keys: Keys, tag: str, contributor: str, now_ms: int) -> list[Op]:
    """The commands that mark ``contributor`` as recording part of call ``tag``."""
    return [("hset", (keys.parts(tag), contributor, f"open:{now_ms}"), {}),
            ("expire", (keys.parts(tag), CALL_TTL_S), {})]


def sweep(r: Any, keys: Keys, now_ms: int) -> int:
    """Make the jobs of calls whose parts waited for a contributor gone stale; how many."""
    made = 0
    stale = now_ms - int(PART_STALE_S * 1000)
    for k in keys.shards:
        for tag in r.zrangebyscore(keys.assembling(k), 0, stale):
            op = part_op(keys, tag.decode(), "", None, now_ms)
            made += int(r.eval(*op[1]) == 1)
    return made
