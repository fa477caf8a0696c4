from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime

import pytest

from correlate.call import Call
from correlate.policy import (
    MAX_PAUSES,
    Decision,
    Facts,
    IdentitySpec,
    PauseSpec,
    Policy,
    Rule,
    Text,
    feed_digit,
    identities,
    message_trigger,
    set_paused,
)


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {
        "caller": ["sip:+4420@x", "+4420"], "callee": ["sip:100@y", "100"],
        "caller_ips": ["10.1.2.3"], "callee_ips": ["192.0.2.7"], "signalling_ips": ["10.1.2.3"],
        "headers": {"x-queue": ["sales"]}, "source": "eth1", "vlan": 20,
        "start": datetime(2026, 1, 15, 21, 30, tzinfo=UTC)}
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def test_text_conditions() -> None:
    assert Text("exact", "+4420").test(["sip:+4420@x", "+4420"]) == "+4420"
    assert Text("prefix", "sip:+44").test(["sip:+4420@x"]) == "sip:+4420@x"
    assert Text("regex", "^1\\d\\d$", re.compile("^1\\d\\d$")).test(["sip:100@y", "100"]) \
        == "100"
    assert Text("exact", "+44").test(["+4420"]) is None


def test_first_match_wins_and_every_condition_must_hold() -> None:
    rules = (
        Rule("hr", 3, callee=Text("exact", "200"), action=Decision("hr", record=False)),
        Rule("lab", 7, caller_ip=(ipaddress.ip_network("10.1.0.0/16"),), vlan=frozenset({20}),
             action=Decision("lab", group="lab")),
        Rule("night", 12, hours=((20 * 60, 8 * 60),), action=Decision("night", group="night")),
        Rule("rest", 15, action=Decision("rest", group="general")),
    )
    p = Policy(rules)
    assert p.decide(facts()).rule == "lab"
    assert p.decide(facts(vlan=30)).rule == "night"  # wraps past midnight
    assert p.decide(facts(vlan=30, start=datetime(2026, 1, 15, 9, tzinfo=UTC))).rule == "rest"
    skip = p.decide(facts(callee=["200"]))
    assert (skip.rule, skip.record) == ("hr", False)
    lines = p.explain(facts(vlan=30))
    assert lines == [
        "rule 'hr' (line 3): no: callee exact '200' does not hold",
        "rule 'lab' (line 7): no: vlan in [20] does not hold",
        "rule 'night' (line 12): MATCH: time in 20:00-08:00 ('21:30') -> record, group night",
    ]
    assert Policy().decide(facts()).rule == "default"
    assert Policy().explain(facts()) == ["no rule matched: the default records the call"]


def test_header_source_days_and_signalling_conditions() -> None:
    r = Rule("x", 1, headers=(("x-queue", Text("prefix", "sal")),), source=Text("exact", "eth1"),
             days=frozenset({"thu"}),
             signalling_ip=(ipaddress.ip_network("10.0.0.0/8"),))
    assert Policy((r,)).decide(facts()).rule == "x"  # 2026-01-15 is a Thursday
    assert Policy((r,)).decide(facts(headers={})).rule == "default"
    assert Policy((r,)).decide(facts(source="eth2")).rule == "default"


def test_a_call_is_decided_on_its_facts_and_without_rules_on_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = call_with()
    c.caller_signal = (bytes([10, 1, 2, 3]), 5060)
    r = Rule("callee", 1, callee=Text("exact", "+4930"), action=Decision("callee", group="g"))
    p = Policy((r,))
    assert p.decide_call(c, "eth1", 20) == p.decide(p.facts(c, "eth1", 20))
    assert p.decide_call(c).rule == "callee"

    def no_facts(*_a: object) -> Facts:
        raise AssertionError("facts worked out for a policy without rules")

    monkeypatch.setattr(Policy, "facts", no_facts)
    assert Policy().decide_call(c).rule == "default"


def call_with(**headers: list[str]) -> Call:
    c = Call("k", "cid", 0)
    c.caller_uri, c.caller_name = "sip:anonymous@anonymous.invalid", "Anonymous"
    c.callee_uri = "sip:+4930@y"
    c.headers = {k.replace("_", "-"): v for k, v in headers.items()}
    return c


def test_identities_in_preference_order_with_display_names() -> None:
    c = call_with(p_asserted_identity=['"Alice" <sip:+4420111@pbx>, <tel:+4420111>'],
                  diversion=["<sip:+4930999@pbx>;reason=unconditional;counter=1"],
                  history_info=["<sip:+4930888@pbx?Reason=SIP%3Bcause%3D302>;index=1"])
    spec = IdentitySpec(caller=("p-asserted-identity", "from"), callee=("to",),
                        original_callee=("history-info", "diversion"))
    assert identities(c, spec, 0) == [("sip:+4420111@pbx", "Alice"), ("tel:+4420111", ""),
                                      ("sip:anonymous@anonymous.invalid", "Anonymous")]
    assert [u for u, _n in identities(c, spec, 1)] == [
        "sip:+4930@y", "sip:+4930888@pbx?Reason=SIP%3Bcause%3D302", "sip:+4930999@pbx"]
    regex = IdentitySpec(caller=("p-asserted-identity",), caller_regex=re.compile(r"tel:(\+\d+)"))
    assert identities(c, regex, 0) == [("+4420111", "")]
    assert identities(call_with(), IdentitySpec(), 0)[0][0] == "sip:anonymous@anonymous.invalid"


def test_pause_spans_and_their_bound() -> None:
    c = Call("k", "cid", 0)
    assert set_paused(c, 10, True) and not set_paused(c, 11, True)
    assert c.paused and set_paused(c, 20, False) and not c.paused
    assert c.pauses == [[10, 20]]
    for k in range(MAX_PAUSES * 2):
        set_paused(c, 100 + 2 * k, True)
        set_paused(c, 101 + 2 * k, False)
    assert len(c.pauses) == MAX_PAUSES
    set_paused(c, 10_000, True)  # past the bound: the last span reopens, silence wins
    assert c.paused and len(c.pauses) == MAX_PAUSES


def test_dtmf_sequences() -> None:
    c = Call("k", "cid", 0)
    spec = PauseSpec(dtmf_pause="*7", dtmf_resume="*8")
    for t, d in enumerate("12*7"):
        feed_digit(c, spec, t, d)
    assert c.pauses == [[3, 0]]
    for t, d in enumerate("55*8", start=10):
        feed_digit(c, spec, t, d)
    assert c.pauses == [[3, 13]]
    feed_digit(c, PauseSpec(), 20, "*")  # no sequences configured: nothing kept
    assert c.pause_digits == ""


@pytest.mark.parametrize(("header", "ctype", "body", "want"), [
    ("pause", "", b"", True), (" Resume ", "", b"", False), ("maybe", "", b"", None),
    ("", "application/x-record-control; v=1", b"pause\r\n", True),
    ("", "application/x-record-control", b"resume", False),
    ("", "application/dtmf-relay", b"pause", None),
])
def test_message_triggers(header: str, ctype: str, body: bytes, want: bool | None) -> None:
    spec = PauseSpec(header="x-record", info_type="application/x-record-control")
    assert message_trigger(spec, header, ctype, body) is want
