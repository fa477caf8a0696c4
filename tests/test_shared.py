"""The shared media map, sans-IO: two Recorders each fed part of one capture (as two
capture processes behind AF_PACKET fanout, or two probes at two sites, see it), telling
each other about their calls with a delay, record each call in parts that the writer joins
into the recording one Recorder makes of the whole capture, sample for sample."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calltap.generate import GenOptions, generate
from capture.decode import decode
from capture.pcapfile import open_capture
from correlate.call import Call
from correlate.events import CallEnded, CallMoved, CallStarted
from correlate.policy import Policy
from correlate.record import CallRecord
from correlate.recorder import HOLD_NS, Recorder, Settings
from correlate.shared import (
    Announcement,
    AnnouncementError,
    announcements,
    from_json,
    to_json,
)
from tests.helpers import read_wav
from writer.columns import MediaColumns
from writer.job import write_call

NS = 1_000_000_000
moved: list[str] = []
"""Keys of the unsignalled calls the last ``_split`` turned into parts (CallMoved)."""
# How late the other process hears of a call: a Redis round trip and a read, generously.
DELAY_NS = 50_000_000

Packet = tuple[int, int, bytes]


class MemSink:
    """Each call's media in memory, as its spool would hold it."""

    def __init__(self) -> None:
        self.got: dict[int, list[tuple[int, int, bytes]]] = {}

    def add(self, call: Call, ts_ns: int, flow: int, payload: bytes) -> None:
        self.got.setdefault(call.serial, []).append((ts_ns, flow, payload))

    def columns(self, serial: int) -> MediaColumns:
        got = self.got.get(serial, [])
        lengths = np.array([len(p) for _t, _f, p in got], np.int64)
        offs = np.cumsum(lengths) - lengths
        data = np.frombuffer(b"".join(p for _t, _f, p in got), np.uint8)
        return MediaColumns(np.array([t for t, _f, _p in got], np.int64),
                            np.array([f for _t, f, _p in got], np.int64), offs, lengths, data)


def _capture(tmp_path: Path, duration: float = 4.0) -> list[Packet]:
    pcap = tmp_path / "calls.pcap"
    generate(str(pcap), GenOptions(calls=3, duration=duration, seed=11, rtcp=True,
                                   codecs=("PCMU", "PCMA")))
    return list(open_capture(str(pcap)))


PLAIN, SHARED = Settings(), Settings(shared=True)


def _one(packets: list[Packet], settings: Settings = PLAIN
         ) -> dict[str, tuple[CallRecord, MediaColumns]]:
    sink = MemSink()
    rec = Recorder(settings, Policy(), sink)
    rec.feed(packets)
    rec.finish()
    return {e.record.call.call_id: (e.record, sink.columns(e.call.serial))
            for e in rec.events() if isinstance(e, CallEnded) and e.record is not None}


def _split(packets: list[Packet], where: Callable[[Any], str], delay_ns: int = DELAY_NS,
           settings: Settings = SHARED
           ) -> dict[str, list[tuple[str, CallRecord, MediaColumns]]]:
    """Feed each packet to the Recorder(s) ``where`` names ("a", "b" or "ab"), passing
    each one's announcements to the other DELAY_NS later; every part that ended, by
    Call-ID."""
    sinks = {"a": MemSink(), "b": MemSink()}
    recs = {n: Recorder(settings, Policy(), sinks[n]) for n in "ab"}
    pending: list[tuple[int, str, Announcement]] = []
    parts: dict[str, list[tuple[str, CallRecord, MediaColumns]]] = {}
    moved.clear()

    def drain(now: int) -> None:
        for name, rec in recs.items():
            events = rec.events()
            for a in announcements(events, rec.media, name):
                pending.append((now + delay_ns, "b" if name == "a" else "a",
                                from_json(to_json(a))))
            for e in events:
                if isinstance(e, CallMoved):
                    moved.append(e.old_key)
                if isinstance(e, CallEnded) and e.record is not None:
                    parts.setdefault(e.call.call_id, []).append(
                        (name, e.record, sinks[name].columns(e.call.serial)))

    def deliver(now: int) -> None:
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            recs[item[1]].announce(item[2])

    for ts, link, frame in packets:
        deliver(ts)
        mine = where(decode(link, frame))
        for name, rec in recs.items():
            if name in mine:
                rec.feed([(ts, link, frame)])
            elif 0 <= rec.next_deadline() <= ts:  # idle, time passes (live: the wall clock)
                rec.handle_timer(ts)
        drain(ts)
    end = packets[-1][0]
    for step in range(1, 12 + 2 * delay_ns // NS):  # time passes: lingers end
        deliver(end + step * NS // 2)
        for rec in recs.values():
            rec.handle_timer(end + step * NS // 2)
        drain(end + step * NS // 2)
    for rec in recs.values():
        rec.finish()
    drain(end + 6 * NS)
    assert not pending
    return parts


def _written(tmp_path: Path, name: str, main: tuple[CallRecord, MediaColumns],
             parts: list[tuple[CallRecord, MediaColumns]]) -> tuple[dict[str, Any],
                                                                   np.ndarray]:
    out = tmp_path / name
    entry = write_call(main[0], main[1], str(out), parts=parts).entry
    audio, _rate = read_wav(out / entry["audio"])
    summary = json.loads((out / entry["summary"]).read_text())
    return summary, audio


def _same(tmp_path: Path, whole: dict[str, tuple[CallRecord, MediaColumns]],
          parts: dict[str, list[tuple[str, CallRecord, MediaColumns]]]) -> int:
    """Each call's parts, joined, write what the whole capture writes; the number of calls
    recorded in more than one part."""
    assert set(parts) == set(whole)
    split = 0
    for cid, (record, cols) in whole.items():
        views = sorted(parts[cid], key=lambda p: (p[1].call.remote != "",
                                                  -p[1].call.sip_messages))
        split += len(views) > 1
        s1, a1 = _written(tmp_path, f"one-{cid}", (record, cols), [])
        s2, a2 = _written(tmp_path, f"two-{cid}", views[0][1:],
                          [v[1:] for v in views[1:]])
        assert a1.shape == a2.shape and (a1 == a2).all(), cid
        for key in ("packets", "directions", "sip_messages", "status", "duration_s",
                    "start", "end"):
            assert s1.get(key) == s2.get(key), (cid, key, s1.get(key), s2.get(key))
    return split


@pytest.mark.parametrize("delay_ns", [DELAY_NS, HOLD_NS + 2 * NS])
def test_media_without_its_signalling_is_recorded_for_the_call(tmp_path: Path,
                                                               delay_ns: int) -> None:
    """As AF_PACKET fanout splits one port: the flows of one call (both directions, RTP
    and RTCP) reach process b, which never sees a SIP message; every other packet reaches
    a. The word may come after b's hold ran out (a's capture fell behind): the media b
    took for unsignalled then becomes the call's part."""
    packets = _capture(tmp_path)
    whole = _one(packets)
    first = min(whole.values(), key=lambda v: v[0].call.start_ns)[0].call
    ends = {e for f in first.flows for e in f[:2]}

    def where(d: Any) -> str:
        return "b" if isinstance(d, tuple) and ((d[1], d[3]) in ends
                                                or (d[2], d[4]) in ends) else "a"

    parts = _split(packets, where, delay_ns)
    assert _same(tmp_path, whole, parts) == 1
    (b_part,) = [p for p in parts[first.call_id] if p[0] == "b"]
    assert b_part[1].call.remote == "a" and b_part[1].call.sip_messages == 0
    assert len(moved) == (delay_ns > HOLD_NS)
    assert all(k.startswith("rtp ") for k in moved)


def test_a_call_whose_media_is_elsewhere_is_not_ended_as_silent(tmp_path: Path) -> None:
    """The process with a call's SIP sees none of its RTP: the one recording it hears
    that the media flows, so a call longer than the inactivity timeout is not cut."""
    packets = _capture(tmp_path, duration=12.0)
    quiet = Settings(inactivity_ns=3 * NS)
    whole = _one(packets, quiet)

    def where(d: Any) -> str:
        sip = isinstance(d, tuple) and (d[3] in (5060, 5061) or d[4] in (5060, 5061))
        return "a" if sip or not isinstance(d, tuple) else "b"

    parts = _split(packets, where, settings=replace(quiet, shared=True))
    assert _same(tmp_path, whole, parts) == len(whole)
    assert {r.call.end_reason for v in parts.values() for n, r, _c in v if n == "a"} == {"bye"}


def test_each_probe_seeing_one_side_makes_one_recording(tmp_path: Path) -> None:
    """Two sites: each probe sees every SIP message, and only the RTP its own party
    sends (and the RTCP about it)."""
    packets = _capture(tmp_path)
    whole = _one(packets)
    caller_sends = {(f[0], f[1]) for r, _c in whole.values() for f in r.call.flows
                    if f[3] == 0}

    def where(d: Any) -> str:
        if not isinstance(d, tuple) or d[3] in (5060, 5061) or d[4] in (5060, 5061):
            return "ab"
        return "a" if ((d[1], d[3]), (d[2], d[4])) in caller_sends else "b"

    parts = _split(packets, where)
    assert _same(tmp_path, whole, parts) == len(whole)
    assert all(p[1].call.remote == "" for v in parts.values() for p in v)


def test_a_flow_split_by_hash_like_fanout(tmp_path: Path) -> None:
    """Flows spread by a symmetric hash of their ends, SIP included, as the kernel does."""
    packets = _capture(tmp_path)
    whole = _one(packets)

    def where(d: Any) -> str:
        if not isinstance(d, tuple):
            return "a"
        ends = sorted([(d[1], d[3]), (d[2], d[4])])
        return "ab"[zlib.crc32(repr(ends).encode()) % 2]

    assert _same(tmp_path, whole, _split(packets, where)) >= 1


def test_held_media_waits_for_an_announcement_and_then_goes_unsignalled(
        tmp_path: Path) -> None:
    """Without any announcement, held RTP is promoted as unsignalled media after HOLD_NS,
    with every packet it held; the held count is bounded."""
    packets = []
    rtp = 0
    for p in _capture(tmp_path):
        d = decode(p[1], p[2])
        if isinstance(d, tuple) and b"SIP/2.0" not in d[5]:
            packets.append(p)
            rtp += not 72 <= d[5][1] & 0x7F <= 76
    sink = MemSink()
    rec = Recorder(Settings(shared=True), Policy(), sink)
    rec.feed(packets[:40])
    assert rec.media_packets == 0
    assert rec._held_bytes == sum(len(p[2]) for p in packets[:40])  # noqa: SLF001
    rec.feed(packets[40:])
    rec.finish()
    ended = [e for e in rec.events() if isinstance(e, CallEnded) and e.record is not None]
    assert len(ended) == 3 and all(e.call.unsignalled for e in ended)
    assert rec.media_packets == rtp and rec._held_bytes == 0  # noqa: SLF001


def test_an_announcement_of_a_call_not_recorded_keeps_nothing(tmp_path: Path) -> None:
    sink = MemSink()
    rec = Recorder(Settings(shared=True), Policy(), sink)
    ep = (bytes([192, 0, 2, 9]), 40000)
    rec.announce(Announcement("k\x00t", "cid", 1, "a", ((ep, 0, 0),), record=True))
    (started,) = [e for e in rec.events() if isinstance(e, CallStarted)]
    assert started.call.remote == "a"
    rec.announce(Announcement("k\x00t", "cid", 1, "a", (), record=False, ended=True))
    rec.handle_timer(10 * NS)
    ended = [e for e in rec.events() if isinstance(e, CallEnded)]
    assert len(ended) == 1 and ended[0].record is None and sink.got == {}


@pytest.mark.parametrize("text", [b"", b"{}", b"[1]", b'{"key":"k","call_id":"c",'
                                  b'"start_ns":1,"owner":"a","record":true,"ended":false,'
                                  b'"eps":[["zz",1,0,0]]}',
                                  b'{"key":"k","call_id":"c","start_ns":1,"owner":"a",'
                                  b'"record":true,"ended":false,"eps":[["c0000209",70000,0,0]]}'])
def test_unreadable_announcements_are_refused(text: bytes) -> None:
    with pytest.raises(AnnouncementError, match="shared media map entry"):
        from_json(text)


def test_announcements_round_trip() -> None:
    a = Announcement("k\x00t", "cid", 5, "probe-a/1",
                     (((b"\x20\x01" + bytes(14), 5004), 1, 0), ((bytes(4), 9), 0, 2)))
    assert from_json(to_json(a)) == a
    for cut in range(len(to_json(a))):
        with pytest.raises(AnnouncementError):
            from_json(to_json(a)[:cut])


def test_held_media_is_bounded_in_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    """Past MAX_HELD_BYTES nothing more is held: it goes the unsignalled way at once."""
    from correlate import recorder

    monkeypatch.setattr(recorder, "MAX_HELD_BYTES", 2000)
    packets = [p for p in _capture(tmp_path)
               if isinstance(d := decode(p[1], p[2]), tuple) and b"SIP/2.0" not in d[5]]
    rec = Recorder(Settings(shared=True), Policy(), MemSink())
    rec.feed(packets[:60])
    held = rec._held_bytes  # noqa: SLF001
    assert 2000 <= held < 2000 + max(len(p[2]) for p in packets)
    assert rec.media_packets > 0  # the rest was promoted as before, after five packets
