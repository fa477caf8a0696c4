"""Acceptance: real SIPp calls on loopback, recorded sample for sample."""

from __future__ import annotations

import warnings
from pathlib import Path

import dpkt
import numpy as np
import pytest

from tests.helpers import ROOT, load_index, load_summary, read_wav, run_import

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # independent G.711 decoder

CAPTURE = ROOT / "pcaps" / "sipp-speech.pcap"
SOURCES = (ROOT / "pcaps/sipp/caller-speech.pcap", ROOT / "pcaps/sipp/callee-speech.pcap")


def sent_audio(path: Path) -> np.ndarray:
    """The PCMU a side streamed, decoded independently (dpkt + audioop)."""
    chunks = []
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            rtp = dpkt.rtp.RTP(bytes(dpkt.ethernet.Ethernet(buf).data.data.data))
            chunks.append(np.frombuffer(audioop.ulaw2lin(rtp.data, 2), dtype=np.int16))
    return np.concatenate(chunks)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sipp")
    run_import([CAPTURE], out)
    return out


def test_two_calls_both_parties(recorded: Path) -> None:
    entries = load_index(recorded)
    assert len(entries) == 2
    for e in entries:
        assert e["status"] == "completed" and e["codecs"] == ["PCMU/8000"]
        assert e["caller"].startswith("sip:alice@") and e["callee"].startswith("sip:bob@")
        assert e["lost"] == [0, 0]
        s = load_summary(recorded, e)
        assert [d["ssrcs"][0]["ssrc"] for d in s["directions"]] == ["0x11110000", "0x22220000"]


def test_each_channel_equals_what_that_side_sent(recorded: Path) -> None:
    refs = [sent_audio(p) for p in SOURCES]
    for e in load_index(recorded):
        audio, rate = read_wav(recorded / e["audio"])
        assert rate == 8000
        for ch, ref in enumerate(refs):
            got = audio[:, ch]
            corr = np.correlate(got[: len(ref) + 800].astype(np.float64),
                                ref.astype(np.float64), mode="valid")
            lag = int(np.argmax(corr))
            assert np.array_equal(got[lag: lag + len(ref)], ref), (e["call_id"], ch, lag)
            # nothing else in the channel: silence before and after the stream
            assert not got[:lag].any() and not got[lag + len(ref):].any()


def test_metadata_valid_and_label1_is_caller(recorded: Path) -> None:
    from tests.helpers import SCHEMA

    if not SCHEMA.exists():
        pytest.skip("../shared/schemas is absent (fresh clone without the shared corpus)")
    import xml.etree.ElementTree as ET

    import xmlschema

    from writer.metadata import CT, NS

    schema = xmlschema.XMLSchema10(str(SCHEMA))
    for e in load_index(recorded):
        doc = (recorded / e["metadata"]).read_text()
        schema.validate(doc)
        streams = ET.fromstring(doc).findall(f"{{{NS}}}stream")
        media = [s.find(f"{{{CT}}}media") for s in streams]
        assert [s.findtext(f"{{{NS}}}label") for s in streams] == ["1", "2"]
        assert [(m.get("channel"), m.get("ssrc")) for m in media if m is not None] == [
            ("0", "0x11110000"), ("1", "0x22220000")]
