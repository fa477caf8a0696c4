from __future__ import annotations

from correlate.keys import Keys


def test_call_keys_share_a_hash_tag_and_never_hold_header_text() -> None:
    k = Keys("site1")
    tag = Keys.tag("call-id-with spaces\x00and-tag")
    assert len(tag) == 20 and all(c in "0123456789abcdef" for c in tag)
    assert k.call(tag) == f"site1:call:{{{tag}}}"
    assert {k.jobs, k.events, k.index, k.live, k.parked} == {
        "site1:jobs", "site1:events", "site1:index", "site1:live", "site1:parked"}
    assert Keys.tag("a") != Keys.tag("b") and Keys.tag("a") == Keys.tag("a")
