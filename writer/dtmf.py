"""DTMF from RFC 4733 telephone-event packets and SIP INFO bodies.

An event is one digit: all packets of it share the RTP timestamp of its start (RFC 4733
section 2.5.1.3), so retransmitted end packets collapse into the event they end.
"""

from __future__ import annotations

import struct
from typing import Any

from correlate.sipinfo import EVENT_NAMES, MAX_DIGITS

_EVENT = struct.Struct("!BBH")


def event_name(event: int) -> str:
    if event < len(EVENT_NAMES):
        return EVENT_NAMES[event]
    return "flash" if event == 16 else f"event-{event}"


class TelephoneEvents:
    """Collects the digits of one direction from telephone-event payloads."""

    def __init__(self, clock: int) -> None:
        self.clock = clock
        self.digits: list[dict[str, Any]] = []
        self.dropped = 0
        self._open: dict[int, dict[str, Any]] = {}  # RTP timestamp -> event still open
        self._ended: set[int] = set()

    def feed(self, ts_ns: int, rtp_ts: int, payload: bytes) -> None:
        if len(payload) < 4:
            return
        event, flags, duration = _EVENT.unpack_from(payload, 0)
        end = bool(flags & 0x80)
        if rtp_ts in self._ended:
            return  # a retransmitted end packet (section 2.5.1.4)
        cur = self._open.get(rtp_ts)
        if cur is None:
            if len(self.digits) + len(self._open) >= MAX_DIGITS:
                self.dropped += 1
                return
            cur = self._open[rtp_ts] = {"digit": event_name(event), "start_ns": ts_ns,
                                        "rtp_ts": rtp_ts, "duration": duration,
                                        "volume_dbm0": -(flags & 0x3F)}
        cur["duration"] = max(cur["duration"], duration)
        if end:
            self._close(rtp_ts)

    def _close(self, rtp_ts: int) -> None:
        cur = self._open.pop(rtp_ts)
        self._ended.add(rtp_ts)
        if len(self._ended) > MAX_DIGITS:
            self._ended.pop()
        self.digits.append(cur)

    def finish(self) -> list[dict[str, Any]]:
        """Every digit seen, ended or not (a lost end packet still leaves the digit)."""
        for rtp_ts in list(self._open):
            self._close(rtp_ts)
        return [
            {"digit": d["digit"], "start_ns": d["start_ns"],
             "duration_ms": round(d["duration"] * 1000 / self.clock, 1),
             "volume_dbm0": d["volume_dbm0"], "source": "rfc4733"}
            for d in sorted(self.digits, key=lambda d: int(d["start_ns"]))
        ]
