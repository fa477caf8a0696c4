"""The sans-IO Recorder: events for a call's life, timers driven by explicit times (never a
clock of its own), the policy's word and a shell's refusal at a call's start, and the
columnar feed of an indexed capture routing every packet where the packet-by-packet feed
does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from calltap.generate import GenOptions, generate
from capture.index import index_windows
from capture.pcapfile import open_capture
from capture.vector import UdpBatch
from correlate.call import Call
from correlate.events import CallEnded, CallStarted, FlowAdded
from correlate.policy import Policy
from correlate.recorder import TIMER_NS, Recorder, Settings
from tests.helpers import pcap_bytes, sip_invite, udp4

NS = 1_000_000_000


class Sink:
    """Every routed packet as (call serial, flow, capture time)."""

    def __init__(self) -> None:
        self.got: list[tuple[int, int, int]] = []
        self.position = 0
        self.udp: UdpBatch | None = None
        self._ts: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self._slots: list[tuple[int, int]] = []
        self._by_call: dict[int, list[int]] = {}

    def add(self, call: Call, ts_ns: int, flow: int, payload: bytes) -> None:
        self.got.append((call.serial, flow, ts_ns))

    def window(self, index: object, udp: UdpBatch) -> None:
        self._ts = index.ts_ns  # type: ignore[attr-defined]
        self.udp = udp

    def slot(self, call: Call, flow: int) -> int:
        self._slots.append((call.serial, flow))
        self._by_call.setdefault(call.serial, []).append(len(self._slots) - 1)
        return len(self._slots) - 1

    def assign(self, packets: npt.NDArray[np.int64], slots: npt.NDArray[np.int64]) -> None:
        for p, s in zip(packets.tolist(), slots.tolist(), strict=True):
            serial, flow = self._slots[s]
            self.got.append((serial, flow, int(self._ts[p])))

    def slots_of(self, call: Call) -> list[int]:
        return self._by_call.get(call.serial, [])


def capture(tmp_path: Path, **kw: object) -> Path:
    pcap = tmp_path / "calls.pcap"
    generate(str(pcap), GenOptions(**{"calls": 3, "duration": 3.0, "seed": 6, **kw}))  # type: ignore[arg-type]
    return pcap


def test_a_calls_life_as_events(tmp_path: Path) -> None:
    sink = Sink()
    rec = Recorder(Settings(), Policy(), sink, "calls.pcap")
    rec.feed(open_capture(str(capture(tmp_path))))
    events = rec.events()
    assert rec.events() == []  # drained
    started = [e for e in events if isinstance(e, CallStarted)]
    assert len(started) == 3 and all(e.call.source == "calls.pcap" for e in started)
    assert all(e.call.decision is not None and e.call.decision.record for e in started)
    assert len([e for e in events if isinstance(e, FlowAdded)]) >= 6
    rec.finish()
    ended = [e for e in rec.events() if isinstance(e, CallEnded)]
    assert len(ended) == 3 and all(e.record is not None and not e.skipped for e in ended)
    assert {e.record.call.status for e in ended if e.record} == {"completed"}
    assert len(sink.got) == rec.media_packets == 3 * 2 * 3 * 50  # 3 calls, 2 sides, 3 s


def test_timers_run_on_the_times_given(tmp_path: Path) -> None:
    """A call that falls silent ends on the inactivity timeout of the time handed in, at
    the next tick, and not before."""
    sink = Sink()
    rec = Recorder(Settings(inactivity_ns=5 * NS), Policy(), sink)
    packets = list(open_capture(str(capture(tmp_path, calls=1, duration=20.0))))
    rec.feed(packets[:400])  # mid-call, about 4 s in: no BYE yet
    assert [e for e in rec.events() if isinstance(e, CallEnded)] == []
    last = rec.clock
    assert last < rec.next_deadline() <= last + TIMER_NS
    rec.handle_timer(last + 4 * NS)
    assert [e for e in rec.events() if isinstance(e, CallEnded)] == []
    rec.handle_timer(last + 6 * NS)
    (ended,) = [e for e in rec.events() if isinstance(e, CallEnded)]
    assert ended.call.end_reason == "rtp-timeout" and ended.record is not None
    assert rec.next_deadline() == last + 6 * NS + TIMER_NS


def test_refused_and_skipped_calls_are_ended_without_a_record(tmp_path: Path) -> None:
    sink = Sink()
    rec = Recorder(Settings(), Policy(), sink)
    rec.refusing = True  # the shell's disk is nearly full
    rec.feed(open_capture(str(capture(tmp_path, calls=2))))
    rec.finish()
    ended = [e for e in rec.events() if isinstance(e, CallEnded)]
    assert len(ended) == 2 and all(e.record is None and e.skipped == "policy" for e in ended)
    assert rec.calls_refused == 2 and rec.calls_skipped == 2 and sink.got == []
    assert rec.all_drops()["media_of_call_not_recorded"] > 100


def test_indexed_feed_routes_like_the_packet_feed(tmp_path: Path) -> None:
    pcap = capture(tmp_path, calls=4, duration=4.0, loss=0.02, duplicate=0.05, rtcp=True)
    one, two = Sink(), Sink()
    a = Recorder(Settings(), Policy(), one)
    a.feed(open_capture(str(pcap)))
    a.finish()
    b = Recorder(Settings(), Policy(), two)
    for window in index_windows(str(pcap), 300):
        b.feed_indexed(window, two)
    b.end_indexed()
    b.finish()
    assert sorted(one.got) == sorted(two.got) and len(one.got) > 1000
    assert a.all_drops() == b.all_drops() and a.packets == b.packets
    ends = [[(e.call.call_id, e.call.status, e.call.end_ns) for e in r.events()
             if isinstance(e, CallEnded)] for r in (a, b)]
    assert ends[0] == ends[1] and len(ends[0]) == 4


def test_registrations_are_counted_as_outside_any_dialog_without_a_call(tmp_path: Path) -> None:
    """REGISTER and its responses (never part of a dialog, RFC 3261 section 10) are counted
    as SIP outside any INVITE dialog, as the tracker counted them, and make no call."""
    register = (b"REGISTER sip:x SIP/2.0\r\nCall-ID: abc@test\r\nFrom: <sip:a@x>;tag=1\r\n"
                b"To: <sip:a@x>\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n")
    ok = register.replace(b"REGISTER sip:x SIP/2.0", b"SIP/2.0 200 OK")
    frames = [(k * NS, udp4("192.0.2.1", 5060, "192.0.2.2", 5060, m))
              for k, m in enumerate([register, ok, sip_invite(), register, ok])]
    pcap = tmp_path / "r.pcap"
    pcap.write_bytes(pcap_bytes(frames))
    rec = Recorder(Settings(), Policy(), Sink(), "r.pcap")
    rec.feed(open_capture(str(pcap)))
    rec.finish()
    ended = [e for e in rec.events() if isinstance(e, CallEnded)]
    # the INVITE's dialog shares the registrations' Call-ID, yet holds none of them
    assert len(ended) == 1 and ended[0].call.sip_messages == 1
    assert rec.sip_packets == 5 and rec.all_drops()["sip_outside_invite_dialog"] == 4
