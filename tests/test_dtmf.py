from __future__ import annotations

import struct

from writer.dtmf import TelephoneEvents, event_name

MS = 1_000_000


def ev(event: int, end: bool, duration: int, volume: int = 10) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def test_end_retransmissions_collapse() -> None:
    t = TelephoneEvents(8000)
    for k, dur in enumerate((0, 160, 320, 480)):
        t.feed(k * 20 * MS, 1000, ev(5, False, dur))
    for k in range(3):  # the end packet is sent three times (RFC 4733 section 2.5.1.4)
        t.feed((4 + k) * 20 * MS, 1000, ev(5, True, 640))
    t.feed(500 * MS, 9000, ev(11, False, 0))
    t.feed(520 * MS, 9000, ev(11, True, 400))
    digits = t.finish()
    assert [(d["digit"], d["duration_ms"], d["start_ns"]) for d in digits] == [
        ("5", 80.0, 0), ("#", 50.0, 500 * MS)]
    assert digits[0]["volume_dbm0"] == -10


def test_lost_end_packet_keeps_the_digit_and_short_payload_ignored() -> None:
    t = TelephoneEvents(8000)
    t.feed(0, 1, ev(1, False, 160))
    t.feed(1, 2, b"\x01")
    assert [d["digit"] for d in t.finish()] == ["1"]


def test_names() -> None:
    assert [event_name(i) for i in (0, 9, 10, 11, 12, 15, 16, 40)] == [
        "0", "9", "*", "#", "A", "D", "flash", "event-40"]
