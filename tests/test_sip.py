from __future__ import annotations

import pytest

from correlate.errors import SipError
from correlate.sip import (
    MAX_MESSAGE,
    find_sdp,
    is_registration,
    looks_like_sip,
    parse_name_addr,
    parse_sip,
)
from tests.helpers import sip_invite

RESPONSE = (
    b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h\r\nFrom: \"Alice A\" <sip:a@x>;tag=1\r\n"
    b"To: <sip:b@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def test_request() -> None:
    m = parse_sip(sip_invite())
    assert m.method == "INVITE" and m.is_request and m.uri == "sip:b@y"
    assert m.call_id == "abc@test" and m.from_.tag == "t1" and m.to.tag == ""
    assert m.cseq == 1 and m.cseq_method == "INVITE"
    assert m.sdp() is not None and m.sdp().startswith(b"v=0")  # type: ignore[union-attr]


def test_compact_forms() -> None:
    m = parse_sip(sip_invite(compact=True))
    assert m.call_id == "abc@test" and m.from_.tag == "t1"
    assert m.header("content-type") == "application/sdp"
    assert m.sdp() is not None


def test_response_and_display_name() -> None:
    m = parse_sip(RESPONSE)
    assert m.status == 180 and m.reason == "Ringing" and not m.is_request
    assert m.from_.display == "Alice A" and m.from_.uri == "sip:a@x" and m.to.tag == "2"


def test_folded_header_and_lf_only() -> None:
    folded = RESPONSE.replace(b"Via: SIP/2.0/UDP h\r\n", b"Via: SIP/2.0/UDP h\r\n  ;rport\r\n")
    assert parse_sip(folded).header("via") == "SIP/2.0/UDP h ;rport"
    assert parse_sip(RESPONSE.replace(b"\r\n", b"\n")).status == 180


def test_multipart_body() -> None:
    sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n"
    body = (b"--XyZ\r\nContent-Type: application/sdp\r\n\r\n" + sdp + b"\r\n"
            b"--XyZ\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<x/>\r\n--XyZ--\r\n")
    assert find_sdp('multipart/mixed;boundary="XyZ"', body) == sdp
    assert find_sdp("multipart/mixed", body) is None
    assert find_sdp("text/plain", b"hi") is None


def test_addr_spec_and_bad_name_addr() -> None:
    na = parse_name_addr("sip:a@x;tag=99", "From")
    assert na.uri == "sip:a@x" and na.tag == "99"
    with pytest.raises(SipError):
        parse_name_addr("<sip:a@x", "From")
    with pytest.raises(SipError):
        parse_name_addr("", "To")


@pytest.mark.parametrize(
    "data,match",
    [
        (RESPONSE.replace(b"Call-ID: c1\r\n", b""), "Call-ID"),
        (RESPONSE.replace(b"CSeq: 1 INVITE", b"CSeq: x"), "CSeq"),
        (RESPONSE.replace(b"SIP/2.0 180", b"SIP/2.0 18"), "status line"),
        (RESPONSE.replace(b"SIP/2.0 180", b"SIP/2.0 999"), "outside"),
        (RESPONSE.replace(b"Content-Length: 0", b"Content-Length: x"), "Content-Length"),
        (b"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n", "without ':'"),
    ],
)
def test_errors(data: bytes, match: str) -> None:
    with pytest.raises(SipError, match=match):
        parse_sip(data)


def test_content_length_cuts_body_and_short_body_is_kept() -> None:
    m = parse_sip(sip_invite() + b"trailing garbage")
    assert not m.body.endswith(b"garbage")
    short = sip_invite()[:-2]
    assert parse_sip(short).sdp() is not None


@pytest.mark.parametrize("msg", [sip_invite(), sip_invite(compact=True), RESPONSE])
def test_every_prefix_and_byte_by_byte(msg: bytes) -> None:
    # fed one byte more at a time, the message parses exactly once its headers are complete
    head_end = msg.index(b"\r\n\r\n") + 4
    for cut in range(len(msg) + 1):
        try:
            parsed = parse_sip(msg[:cut])
        except SipError:
            assert cut < head_end
            continue
        assert cut >= head_end and parsed.call_id in ("abc@test", "c1")


def test_looks_like_sip() -> None:
    assert looks_like_sip(sip_invite()) and looks_like_sip(RESPONSE)
    assert not looks_like_sip(b"\x80\x00" + b"\0" * 170)
    assert not looks_like_sip(b"GET / HTTP/1.1\r\n\r\n")
    assert not looks_like_sip(b"")


def _message(start: str, cseq: str, extra: str = "", body: str = "", eol: str = "\r\n") -> bytes:
    head = [start, "Call-ID: r1@test", "From: <sip:a@x>;tag=1", "To: <sip:a@x>", cseq,
            "Via: SIP/2.0/UDP 192.0.2.1", *([extra] if extra else []),
            f"Content-Length: {len(body)}"]
    return (eol.join(head) + eol + eol + body).encode()


REGISTRATION_CASES = [
    _message("REGISTER sip:x SIP/2.0", "CSeq: 1 REGISTER"),
    _message("SIP/2.0 200 OK", "CSeq: 1 REGISTER"),
    _message("SIP/2.0 401 Unauthorized", "cseq :  7\tregister ", eol="\n"),
    _message("SIP/2.0 200 OK", "CSEQ: 2 Register", extra="Allow: INVITE, BYE"),
    _message("INVITE sip:b@y SIP/2.0", "CSeq: 1 INVITE"),
    _message("SIP/2.0 200 OK", "CSeq: 1 INVITE", extra="Allow: INVITE, REGISTER"),
    _message("SIP/2.0 200 OK", "CSeq: 1 OPTIONS", body="CSeq: 1 REGISTER\r\n"),
    _message("OPTIONS sip:b@y SIP/2.0", "CSeq: 3 OPTIONS", extra="X-Note: REGISTER later"),
    _message("SIP/2.0 200 OK", "CSeq: 1 REGISTERED"),
    # LF-only headers, a body whose lines look like a REGISTER's CSeq after a CRLF blank
    _message("SIP/2.0 200 OK", "CSeq: 1 OPTIONS", eol="\n",
             body="x\nCSeq: 1 REGISTER\r\n\r\n"),
    # the pattern's quick look misses odd cases: the tracker, which parses, counts them alike
    _message("SIP/2.0 200 OK", "CSeq: 1 rEgIsTeR"),
]


@pytest.mark.parametrize("data", REGISTRATION_CASES)
def test_registrations_are_told_apart_as_the_parser_would(data: bytes) -> None:
    msg = parse_sip(data)
    odd = b"rEgIsTeR" in data
    assert is_registration(data) == ("REGISTER" in (msg.method, msg.cseq_method) and not odd)
    for cut in range(len(data)):  # a message cut before its empty line is the parser's
        if is_registration(data[:cut]):
            part = parse_sip(data[:cut])
            assert "REGISTER" in (part.method, part.cseq_method)
    assert not is_registration(b"REGISTER " + b"x" * MAX_MESSAGE + b"\r\n\r\n")  # too long
