from __future__ import annotations

import pytest

from correlate.errors import SdpError
from correlate.sdp import parse_sdp
from tests.helpers import ip4

SDP = (
    b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendonly\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=ptime:30\r\n"
    b"m=video 5000 RTP/AVP 34\r\nc=IN IP4 198.51.100.9\r\na=inactive\r\n"
    b"m=audio 6000 RTP/AVP 96\r\na=rtpmap:96 L16/16000/2\r\na=recvonly\r\n"
)


def test_media_and_attributes() -> None:
    s = parse_sdp(SDP)
    a, v, b = s.media
    assert (a.kind, a.port, a.formats) == ("audio", 4000, ["0", "8", "101"])
    assert a.addr == ip4("192.0.2.1")
    assert a.rtpmap[101] == ("telephone-event", 8000, 1) and a.fmtp[101] == "0-15"
    assert a.ptime == 30 and a.direction == "sendonly"
    assert v.addr == ip4("198.51.100.9") and v.direction == "inactive"
    assert b.rtpmap[96] == ("L16", 16000, 2) and b.direction == "recvonly"


def test_ipv6_and_hold_address() -> None:
    s = parse_sdp(b"v=0\r\nc=IN IP6 2001:db8::5\r\nm=audio 1 RTP/AVP 0\r\n")
    assert s.media[0].addr is not None and len(s.media[0].addr) == 16
    hold = parse_sdp(b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 1 RTP/AVP 0\r\n")
    assert hold.media[0].addr == b"\0\0\0\0"


@pytest.mark.parametrize(
    "body", [b"", b"o=- 1\r\n", b"v=0\r\nm=audio\r\n", b"v=0\r\nm=audio x RTP/AVP 0\r\n",
             b"v=0\r\nc=IN\r\n"]
)
def test_errors(body: bytes) -> None:
    with pytest.raises(SdpError):
        parse_sdp(body)


FULL = [("audio", 4000), ("video", 5000), ("audio", 6000)]


def test_every_prefix() -> None:
    for cut in range(len(SDP) + 1):
        try:
            media = parse_sdp(SDP[:cut]).media
        except SdpError:
            continue
        assert len(media) <= len(FULL)
        for k, m in enumerate(media):
            kind, port = FULL[k]
            if k < len(media) - 1:  # lines before the cut are whole
                assert (m.kind, m.port) == (kind, port), cut
            else:  # the last may be cut inside its m= line
                assert kind.startswith(m.kind) and str(port).startswith(str(m.port)), cut
