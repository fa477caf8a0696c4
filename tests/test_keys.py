"""The key schema: every key of a call on its shard's one hash tag, no header text in
names, every shard's keys apart."""

from __future__ import annotations

from correlate.keys import SHARDS, Keys


def _hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first { and the next }."""
    a = key.index("{")
    return key[a + 1:key.index("}", a)]


def _slot(key: str) -> int:
    """The Cluster slot of a key (CRC16/XMODEM of its hash tag, mod 16384)."""
    data, crc = _hash_tag(key).encode(), 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc % 16384


def test_a_calls_keys_share_its_shards_hash_tag() -> None:
    k = Keys("site1")
    tag = Keys.tag("call-id-with spaces\x00and-tag")
    assert len(tag) == 20 and all(c in "0123456789abcdef" for c in tag)
    s = Keys.shard(tag)
    assert 0 <= s < SHARDS
    mine = [k.call("probe-a", tag), k.spool_key("probe-a", tag), k.done(tag, 123),
            k.live("probe-a", s), k.jobs(s), k.events(s), k.index(s), k.parked(s)]
    assert {_hash_tag(x) for x in mine} == {f"site1:s{s}"}
    assert len({_slot(x) for x in mine}) == 1  # one slot: one script, one transaction
    assert k.call("probe-a", tag) == f"{{site1:s{s}}}:call:probe-a:{tag}"
    assert k.call("probe-a", tag) != k.call("probe-b", tag)  # a record per probe
    assert {k.probes, k.control} == {"site1:probes", "site1:control"}
    assert Keys.tag("a") != Keys.tag("b") and Keys.tag("a") == Keys.tag("a")


def test_shards_spread_calls_and_land_on_distinct_slots() -> None:
    k = Keys()
    seen = [Keys.shard(Keys.tag(f"call-{n}")) for n in range(4000)]
    counts = [seen.count(s) for s in range(SHARDS)]
    assert min(counts) > 4000 / SHARDS * 0.8  # about even
    assert len({_slot(k.jobs(s)) for s in range(SHARDS)}) == SHARDS
    assert _slot("{foo}") == 12182  # CLUSTER KEYSLOT foo, as Redis computes it
