from __future__ import annotations

from correlate.call import CALLEE, CALLER, Call, MediaOffer
from tests.helpers import ip4


def test_codec_map_prefers_the_receivers_numbers() -> None:
    c = Call("k", "id", 0)
    c.offers[CALLER].append(MediaOffer(ip4("192.0.2.1"), 4000, {96: ("opus", 48000, 2)},
                                       ["96"], "sendrecv", 20, 0))
    c.offers[CALLEE].append(MediaOffer(ip4("192.0.2.2"), 6000, {96: ("PCMA", 8000, 1)},
                                       ["96"], "sendrecv", 20, 0))
    # what the caller sends uses the callee's announced numbers (RFC 3264 section 5.1)
    assert c.codec_map(CALLER)[96] == ("PCMA", 8000, 1)
    assert c.codec_map(CALLEE)[96] == ("opus", 48000, 2)
    assert c.offers[CALLER][0].to_json()["rtpmap"] == {"96": "opus/48000/2"}
