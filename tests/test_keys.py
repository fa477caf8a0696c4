from __future__ import annotations

from correlate.keys import Keys


def test_call_keys_share_a_hash_tag_and_never_hold_header_text() -> None:
    k = Keys("site1")
    tag = Keys.tag("call-id-with spaces\x00and-tag")
    assert len(tag) == 20 and all(c in "0123456789abcdef" for c in tag)
    # a call's record, spool key and done mark: one hash tag, so one Cluster slot
    assert k.call("probe-a", tag) == f"site1:call:probe-a:{{{tag}}}"
    assert k.spool_key("probe-a", tag) == f"site1:spoolkey:probe-a:{{{tag}}}"
    assert k.done(tag, 123) == f"site1:done:{{{tag}}}:123"
    assert k.live("probe-a") == "site1:live:probe-a"
    assert {k.jobs, k.events, k.index, k.probes, k.parked} == {
        "site1:jobs", "site1:events", "site1:index", "site1:probes", "site1:parked"}
    assert Keys.tag("a") != Keys.tag("b") and Keys.tag("a") == Keys.tag("a")
