"""Property tests of the parsers on the packet path (hypothesis): any bytes at all either
parse or raise the package's own error with a message, never anything else; and a valid
message keeps parsing with any suffix a truncation or mirror could add."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from capture.decode import decode  # noqa: E402
from capture.errors import CaptureError  # noqa: E402
from capture.hep import parse_hep  # noqa: E402
from correlate.errors import CorrelateError  # noqa: E402
from correlate.sdp import parse_sdp  # noqa: E402
from correlate.sip import parse_sip  # noqa: E402
from writer.dtmf import TelephoneEvents  # noqa: E402
from writer.errors import WriterError  # noqa: E402
from writer.rtcp import parse_rtcp  # noqa: E402
from writer.rtp import parse_rtp  # noqa: E402

INVITE = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9\r\n"
          b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
          b"Call-ID: abc\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
          b"Content-Length: 0\r\n\r\n")
SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")
# no example database: the run writes nothing into the repository
SETTINGS = settings(max_examples=400, deadline=None, database=None)


@SETTINGS
@given(st.binary(max_size=2048))
def test_sip_any_bytes(data: bytes) -> None:
    try:
        parse_sip(data)
    except CorrelateError as exc:
        assert str(exc)


@SETTINGS
@given(st.binary(max_size=512))
def test_sip_a_valid_head_with_anything_after(tail: bytes) -> None:
    try:
        msg = parse_sip(INVITE + tail)
    except CorrelateError as exc:
        assert str(exc)
    else:
        assert msg is not None


@SETTINGS
@given(st.binary(max_size=1024))
def test_sdp_any_bytes(data: bytes) -> None:
    for body in (data, SDP + data, SDP[:len(data) % len(SDP)]):
        try:
            parse_sdp(body)
        except CorrelateError as exc:
            assert str(exc)


@SETTINGS
@given(st.sampled_from([0, 1, 101, 113, 276, 12, 228, 229]), st.binary(max_size=1600))
def test_link_layer_decoding_any_bytes(linktype: int, frame: bytes) -> None:
    r = decode(linktype, frame)
    assert isinstance(r, int | tuple)


@SETTINGS
@given(st.binary(max_size=600))
def test_hep_any_bytes(data: bytes) -> None:
    for payload in (data, b"HEP3" + data):
        try:
            parse_hep(payload)
        except CaptureError as exc:
            assert str(exc)


@SETTINGS
@given(st.binary(max_size=600))
def test_rtp_and_rtcp_any_bytes(data: bytes) -> None:
    for parse in (parse_rtp, parse_rtcp):
        try:
            parse(data)
        except WriterError as exc:
            assert str(exc)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=8)), max_size=50))
def test_telephone_events_any_packets(packets: list[tuple[int, bytes]]) -> None:
    ev = TelephoneEvents(8000)
    for k, (rtp_ts, payload) in enumerate(packets):
        ev.feed(k * 20_000_000, rtp_ts, payload)
    for d in ev.finish():
        assert d["duration_ms"] >= 0
