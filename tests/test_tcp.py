from __future__ import annotations

import os
import struct

from capture.tcp import MAX_OOO_SEGMENTS, TcpSip
from tests.helpers import ip4, sip_invite

A, B = ip4("192.0.2.1"), ip4("192.0.2.2")
BYE = (b"BYE sip:b@y SIP/2.0\r\nCall-ID: abc@test\r\nFrom: <sip:a@x>;tag=t1\r\n"
       b"To: <sip:b@y>;tag=t2\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")


def seg(seq: int, data: bytes, flags: int = 0x18) -> bytes:
    return struct.pack("!HHIIBBHHH", 5060, 5060, seq, 0, 0x50, flags, 65535, 0, 0) + data


def feed_all(t: TcpSip, segments: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for s in segments:
        out += t.feed(0, A, 5060, B, 5060, s)
    return out


def test_split_and_packed_messages() -> None:
    stream = sip_invite() + BYE + sip_invite(call_id="second")
    cuts = [0, 7, 300, 301, len(sip_invite()) + 10, len(stream)]
    segments = [seg(1000 + a, stream[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert feed_all(TcpSip(), [seg(999, b"", 0x02)] + segments) == [
        sip_invite(), BYE, sip_invite(call_id="second")]


def test_byte_by_byte() -> None:
    stream = BYE + sip_invite()
    t = TcpSip()
    pieces = [seg(2 + i, stream[i: i + 1]) for i in range(len(stream))]
    out = feed_all(t, [seg(1, b"", 0x02), *pieces])
    assert out == [BYE, sip_invite()]


def test_out_of_order_retransmission_and_mid_stream_join() -> None:
    stream = b"tail of an earlier message\r\n" + BYE + sip_invite()
    a = len(stream) // 3
    b = 2 * a
    segments = [seg(5000, stream[:a]), seg(5000 + b, stream[b:]), seg(5000 + a, stream[a:b]),
                seg(5000 + a, stream[a:b])]
    assert feed_all(TcpSip(), segments) == [BYE, sip_invite()]


def test_gap_that_never_fills_is_skipped() -> None:
    t = TcpSip()
    t.feed(0, A, 5060, B, 5060, seg(1, BYE[:20]))  # joined, then the rest is lost
    base = 1 + len(BYE)
    segs = [seg(base + 100 + 10 * i, b"x" * 8 + b"\r\n") for i in range(MAX_OOO_SEGMENTS)]
    feed_all(t, segs)
    out = t.feed(0, A, 5060, B, 5060, seg(base + 100 + 10 * MAX_OOO_SEGMENTS, BYE))
    assert out == [BYE] and t.drops["tcp_gap_skipped"] == 1


def test_not_sip_streams_are_dropped_cheaply() -> None:
    t = TcpSip()
    feed_all(t, [seg(1 + 1000 * i, os.urandom(1000)) for i in range(100)])
    assert t.drops["tcp_not_sip"] == 1


def test_websocket_masked_frames() -> None:
    upgrade = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Protocol: sip\r\n\r\n")
    mask = b"\x11\x22\x33\x44"
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(BYE))
    frame = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(BYE)) + mask + masked
    out = feed_all(TcpSip(), [seg(1, upgrade), seg(1 + len(upgrade), frame[:30]),
                              seg(1 + len(upgrade) + 30, frame[30:])])
    assert out == [BYE]


def test_bounds() -> None:
    t = TcpSip(max_streams=10)
    for port in range(30):
        t.feed(0, A, 10_000 + port, B, 5060, seg(1, BYE[:10]))
    assert len(t) == 10 and t.drops["tcp_stream_table_full"] == 20
    huge = b"INVITE sip:b@y SIP/2.0\r\nContent-Length: 999999999\r\n\r\n"
    t2 = TcpSip()
    assert t2.feed(0, A, 1, B, 2, seg(1, huge)) == []
    assert t2.drops["sip_message_too_large"] == 1


def test_total_buffered_bytes_are_bounded() -> None:
    t = TcpSip()
    t.max_total_bytes = 50_000
    start = b"INVITE sip:b@y SIP/2.0\r\nCall-ID: x\r\n"  # a message that never ends
    for port in range(100):
        t.feed(0, A, 20_000 + port, B, 5060, seg(1, start + b"X-Pad: " + b"p" * 2000 + b"\r\n"))
    assert t._bytes <= 50_000 and t.drops["tcp_memory_limit"] > 0
    assert t._bytes == sum(len(s.buf) + sum(map(len, s.ooo.values())) for s in t._streams.values())
