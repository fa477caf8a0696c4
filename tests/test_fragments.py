from __future__ import annotations

import random

from calltap.mirror import fragment_ipv4
from capture.decode import IP_FRAGMENT, decode, decode_fragment, decode_transport
from capture.fragments import Reassembler
from tests.helpers import sip_invite, udp4

S = 1_000_000_000
KEY = (b"\1\1\1\1", b"\2\2\2\2", 7, 17)


def test_in_order_out_of_order_and_overlap() -> None:
    data = bytes(range(256)) * 10
    pieces = [(off, data[off: off + 800]) for off in range(0, len(data), 800)]
    for order in (pieces, pieces[::-1], random.Random(3).sample(pieces, len(pieces))):
        r = Reassembler()
        out = None
        for i, (off, chunk) in enumerate(order):
            out = r.feed(i, KEY, off, off + len(chunk) < len(data), chunk)
        assert out == data and len(r) == 0
    r = Reassembler()
    assert r.feed(0, KEY, 0, True, data[:1000]) is None
    assert r.feed(0, KEY, 600, True, data[600:1800]) is None  # overlaps the first
    assert r.feed(0, KEY, 1800, False, data[1800:]) == data


def test_missing_fragment_times_out() -> None:
    r = Reassembler(timeout_ns=30 * S)
    r.feed(0, KEY, 0, True, b"x" * 800)
    r.expire(29 * S)
    assert len(r) == 1
    r.expire(30 * S)
    assert len(r) == 0 and r.drops["fragment_timeout"] == 1


def test_bounds() -> None:
    r = Reassembler(max_datagrams=2, max_bytes=2000)
    for ident in range(4):
        r.feed(0, (b"a", b"b", ident, 17), 0, True, b"x" * 100)
    assert len(r) == 2 and r.drops["fragment_table_full"] == 2
    r.feed(0, (b"a", b"b", 0, 17), 100, True, b"x" * 5000)
    assert r.drops["fragment_too_large"] == 1 and len(r) == 1
    r.feed(0, (b"a", b"b", 9, 17), 65_500, True, b"x" * 100)
    assert r.drops["fragment_too_large"] == 2


def test_decode_fragment_round_trip() -> None:
    frame = udp4("192.0.2.1", 5060, "192.0.2.2", 5060, sip_invite())
    frags = fragment_ipv4(frame, 96)
    assert len(frags) > 2 and all(decode(1, f) == IP_FRAGMENT for f in frags)
    r = Reassembler()
    whole = None
    for f in reversed(frags):
        fr = decode_fragment(1, f)
        assert not isinstance(fr, int)
        key, off, more, proto, src, dst, data = fr
        whole = r.feed(0, key, off, more, data) or whole
        last = (proto, src, dst)
    assert whole is not None
    assert decode_transport(*last, whole) == decode(1, frame)
