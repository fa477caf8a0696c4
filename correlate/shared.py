"""The shared media map: what one capture process tells the others about a call whose
signalling it sees, so that a process (or a probe at another site) that receives the call's
RTP without its SIP records that media for it. Plain JSON, sans-IO: the shells carry it
through the store."""

from __future__ import annotations

import json
from dataclasses import dataclass

from correlate.call import Call, Endpoint
from correlate.errors import CorrelateError
from correlate.events import CallEnded, CallStarted, Event, MediaActive, MediaChanged
from correlate.media import MediaTable

# Endpoints one announcement names at most: RTP, RTCP and non-audio streams of both sides
# with re-INVITEs; a call naming more is cut here rather than flooding every process.
MAX_ENDPOINTS = 64


class AnnouncementError(CorrelateError):
    """A shared media map entry that cannot be read."""


@dataclass(frozen=True)
class Announcement:
    """Where a call's media arrives, as the process seeing its signalling knows it."""

    key: str
    """The call's key (Call-ID and From-tag): the same in every process that sees it."""
    call_id: str
    start_ns: int
    owner: str
    """The announcing process's name."""
    endpoints: tuple[tuple[Endpoint, int, int], ...]
    """(endpoint, side receiving there, RTP/RTCP/OTHER) as its media table has them."""
    record: bool = True
    """False when the policy said not to record the call: its media is not kept anywhere."""
    ended: bool = False
    """The call's dialog is over: media of it still collects for the linger time."""
    active_ns: int = 0
    """Not 0: only news that the call's media still flows at the announcer, the capture
    time of its latest packet there (the process with the signalling may see none of it,
    and must not end the call as silent)."""


def announcement(call: Call, media: MediaTable, owner: str, ended: bool = False
                 ) -> Announcement:
    decision = call.decision
    return Announcement(call.key, call.call_id, call.start_ns, owner,
                        tuple(media.entries(call.key))[:MAX_ENDPOINTS],
                        decision is None or bool(decision.record), ended)


def announcements(events: list[Event], media: MediaTable, owner: str) -> list[Announcement]:
    """What ``owner`` tells the others after these events of its Recorder: every call
    whose signalling it sees, when it starts, when its media moves and when it ends."""
    out = []
    for ev in events:
        call = ev.call
        if isinstance(ev, MediaActive):
            out.append(Announcement(call.key, call.call_id, call.start_ns, owner, (),
                                    active_ns=call.last_ns))
            continue
        if call.remote:
            continue
        if isinstance(ev, CallStarted | MediaChanged):
            out.append(announcement(call, media, owner))
        elif isinstance(ev, CallEnded):
            legs = ev.record.legs if ev.record is not None else ()
            out += [Announcement(c.key, c.call_id, c.start_ns, owner, (),
                                 ev.record is not None, True) for c in (call, *legs)]
    return out


def to_json(a: Announcement) -> str:
    return json.dumps({"key": a.key, "call_id": a.call_id, "start_ns": a.start_ns,
                       "owner": a.owner, "record": a.record, "ended": a.ended,
                       "active_ns": a.active_ns,
                       "eps": [[ep[0].hex(), ep[1], side, kind]
                               for ep, side, kind in a.endpoints]},
                      separators=(",", ":"))


def from_json(text: str | bytes) -> Announcement:
    try:
        d = json.loads(text)
        eps = tuple(((bytes.fromhex(str(h)), int(p)), int(s), int(k))
                    for h, p, s, k in d["eps"][:MAX_ENDPOINTS])
        if any(len(ep[0]) not in (4, 16) or not 0 <= ep[1] < 65536 or s not in (0, 1)
               or k not in (0, 1, 2) for ep, s, k in eps):
            raise ValueError("endpoint out of range")
        return Announcement(str(d["key"]), str(d["call_id"]), int(d["start_ns"]),
                            str(d["owner"]), eps, bool(d["record"]), bool(d["ended"]),
                            int(d.get("active_ns", 0)))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise AnnouncementError(f"shared media map entry unreadable: {exc}") from None
