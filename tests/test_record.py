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
