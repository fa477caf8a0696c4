from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tests.helpers import SCHEMA
from writer.metadata import CT, NS, build_metadata, make_id


def summary(**call: Any) -> dict[str, Any]:
    base = {
        "call_id": "a84b4c76e66710@pc33.example.com", "start_ns": 1_700_000_000_000_000_000,
        "end_ns": 1_700_000_060_000_000_000, "caller": "sip:alice@example.com",
        "callee": "sip:bob@example.net", "caller_name": "Alice", "callee_name": "",
        "caller_tag": "1928301774", "callee_tag": "a6c85cf", "status": "completed",
        "end_reason": "bye", "final_code": 200, "final_reason": "OK",
        "post_dial_delay": 0.12, "setup_time": 2.5, "hangup_by": "caller",
        "sip_retransmissions": 0,
    }
    base.update(call)
    direction = {"codecs": ["PCMU/8000"], "ssrcs": [{"ssrc": "0x1a2b3c4d"}], "packets": 10,
                 "lost": 0, "src": "192.0.2.1:4000", "dst": "198.51.100.1:6000",
                 "jitter_ms_max": 1.25, "jitter_ms_mean": 0.5,
                 "quality": {"mos": 4.41, "r_factor": 93.2, "loss_heard_pct": 0.0,
                             "worst_second_mos": 4.41},
                 "capture_integrity": {"verdict": "none"}}
    return {"call": base, "directions": [direction, dict(direction, ssrcs=[])],
            "audio": "2023/11/14/x.wav", "media_start_ns": 0, "recorder_version": "t"}


def schema() -> Any:
    if not SCHEMA.exists():
        pytest.skip("../shared/schemas is absent (fresh clone without the shared corpus)")
    import xmlschema

    return xmlschema.XMLSchema10(str(SCHEMA))


@pytest.mark.parametrize(
    "call",
    [{}, {"final_code": 486, "final_reason": "Busy", "status": "failed"},
     {"reason": {"protocol": "Q.850", "cause": 16, "text": "Normal call clearing"}},
     {"caller": "", "callee": "not a uri <>", "caller_name": "bad\x00\x07name",
      "call_id": "id-with-\x01-control"}],
)
def test_valid_against_rfc7865_schema(call: dict[str, Any]) -> None:
    doc = build_metadata(summary(**call))
    schema().validate(doc.decode())


def test_labels_channels_and_participants() -> None:
    root = ET.fromstring(build_metadata(summary()))
    streams = root.findall(f"{{{NS}}}stream")
    assert [s.findtext(f"{{{NS}}}label") for s in streams] == ["1", "2"]
    media = [s.find(f"{{{CT}}}media") for s in streams]
    assert [m.get("channel") for m in media if m is not None] == ["0", "1"]
    assert media[0] is not None and media[0].get("ssrc") == "0x1a2b3c4d"
    # calltap's own elements come last in their parent
    assert root[-1].tag == f"{{{CT}}}recorder"
    caller_assoc = root.findall(f"{{{NS}}}participantstreamassoc")[0]
    assert caller_assoc.findtext(f"{{{NS}}}send") == streams[0].get("stream_id")


def test_ids_are_deterministic_128_bit() -> None:
    assert make_id("x", "y") == make_id("x", "y") != make_id("x", "z")
    assert len(make_id("x")) == 24
    assert build_metadata(summary()) == build_metadata(summary())


def test_quality_and_signalling_in_the_extension() -> None:
    root = ET.fromstring(build_metadata(summary()))
    c = f"{{{CT}}}"
    sig = root.find(f".//{c}signalling")
    assert sig is not None and sig.attrib == {"post-dial-delay": "0.12", "setup-time": "2.5",
                                              "hangup-by": "caller", "sip-retransmissions": "0"}
    (q1, q2) = root.findall(f".//{c}quality")
    assert q1.attrib["mos"] == "4.41" and q1.attrib["capture-integrity"] == "none"
    assert q1.attrib["jitter-max-ms"] == "1.25"


@pytest.mark.parametrize("call", [
    {},
    {"final_code": 486, "final_reason": "Busy & <gone>", "status": "failed"},
    {"caller_name": 'say "hi"\r\n\tthere & <you>', "callee_name": "é\u00a0ü 日本",
     "headers": {"x-tenant": ["a&b", "<c>", ""], "p-asserted-identity": ['"q" <sip:x>']}},
    {"policy": {"rule": "r&1", "group": "g<1>", "keep_pcap": True, "format": None},
     "legs": [{"call_id": "leg\"2", "start_ns": 5, "start": "s", "end": "e",
               "caller_tag": "", "callee_tag": "t\n"}],
     "paused": [{"start": "a", "end": "b", "offset": 1.5}], "related": ["x&y"]},
    {"identities": {"caller": [{"uri": "sip:+44@pai", "name": "A & B"},
                               {"uri": "tel:+44", "name": ""}],
                    "callee": [{"uri": "bad uri", "name": "x\x01"}]},
     "reason": {"protocol": "Q.850", "cause": 17, "text": "busy <q>"}, "final_code": 486,
     "post_dial_delay": None, "setup_time": "", "legs": [
         {"call_id": "l2", "start_ns": 7, "start": "s2", "end": "e2", "caller_tag": "a",
          "callee_tag": "b", "session_id": "sess"}]},
])
def test_written_as_elementtree_writes_it(call: dict[str, Any]) -> None:
    """The document is serialised by hand for speed: byte for byte what ElementTree's
    indent and tostring give, for hostile text and attributes and every optional part."""
    from writer.metadata import metadata_tree

    info = summary(**call)
    info["dtmf"] = [{"digit": "#", "time": "t&", "side": "caller", "source": "rfc4733",
                     "duration_ms": 80}]
    tree = metadata_tree(info)
    ET.indent(tree)
    want = ("<?xml version='1.0' encoding='utf-8'?>\n"
            + ET.tostring(tree, encoding="unicode") + "\n").encode("utf-8")
    assert build_metadata(info) == want


def test_a_call_without_media_is_written_as_elementtree_writes_it() -> None:
    from writer.metadata import metadata_tree

    info = summary()
    info["audio"] = None
    info["directions"] = [
        {"codecs": [], "ssrcs": [], "packets": 0, "lost": 0, "src": "", "dst": "",
         "jitter_ms_max": 0.0, "jitter_ms_mean": 0.0, "quality": None}] * 2
    tree = metadata_tree(info)
    ET.indent(tree)
    want = ("<?xml version='1.0' encoding='utf-8'?>\n"
            + ET.tostring(tree, encoding="unicode") + "\n").encode("utf-8")
    assert build_metadata(info) == want
    schema().validate(build_metadata(info).decode())
