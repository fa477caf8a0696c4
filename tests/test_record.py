from __future__ import annotations

import pytest

from calltap.config import Config
from calltap.streams import calls_in
from correlate.record import RecordError, call_from_json, call_to_json
from tests.helpers import ROOT


def test_round_trip_of_real_calls() -> None:
    calls = calls_in(str(ROOT / "pcaps" / "sample-calls.pcap"), Config())
    assert len(calls) == 4
    for c in calls:
        text = call_to_json(c)
        back = call_from_json(text)
        assert call_to_json(back) == text
        assert back.flow_ids == c.flow_ids and back.flows == c.flows
        assert [o.rtpmap for o in back.offers[0]] == [o.rtpmap for o in c.offers[0]]
        assert back.decision == c.decision


@pytest.mark.parametrize("bad", [b"", b"{", b"[]", b'{"call_id": "x"}', b"\xff\xfe",
                                 b'{"key": "k", "flows": ' + b"[" * 40 + b"]" * 40 + b"}"])
def test_bad_records_raise_record_error(bad: bytes) -> None:
    with pytest.raises(RecordError):
        call_from_json(bad)


def test_call_record_carries_the_policys_choices() -> None:
    """The record of a call resolves its parties and extra headers under the policy's
    identity rules and keeps the rule's format and layout; stored and read back whole."""
    from dataclasses import replace

    from correlate.policy import Decision, IdentitySpec
    from correlate.record import finished, record_from_json, record_to_json

    call = calls_in(str(ROOT / "pcaps" / "sample-calls.pcap"), Config())[0]
    call.headers = {"p-asserted-identity": ['"Agent 7" <sip:+4420700@pbx>'],
                    "x-queue": ["sales"]}
    call.decision = replace(Decision("rule-a"), audio_format="flac", layout="split")
    spec = IdentitySpec(caller=("p-asserted-identity", "from"), extra_headers=("x-queue",))
    rec = finished(call, spec)
    assert rec.audio_format == "flac" and rec.layout == "split"
    assert rec.parties[0][0] == ("sip:+4420700@pbx", "Agent 7")
    assert rec.parties[0][1][0] == call.caller_uri
    assert rec.headers == (("x-queue", ("sales",)),)
    back = record_from_json(record_to_json(rec))
    assert record_to_json(back) == record_to_json(rec)
    assert back.parties == rec.parties and back.headers == rec.headers


def test_a_bare_call_job_reads_as_a_record_with_default_identities() -> None:
    from correlate.record import record_from_json

    call = calls_in(str(ROOT / "pcaps" / "sample-calls.pcap"), Config())[0]
    rec = record_from_json(call_to_json(call))
    assert rec.parties[0][0][0] == call.caller_uri and rec.audio_format == ""
    with pytest.raises(RecordError):
        record_from_json(b'{"v": 99, "call": {}}')
    with pytest.raises(RecordError):
        record_from_json(b'{"v": 1, "call": {"key": "k"}}')
