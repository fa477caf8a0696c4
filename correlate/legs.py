"""B2BUA legs: an SBC or PBX that starts a dialog of its own towards the callee gives two
calls that are one conversation. They are linked when the second starts (RFC 7989
Session-ID: both legs carry the caller's UUID; or a configured header carrying the other
leg's Call-ID, as several SBCs send) and written as one recording once both have ended.
Sans-IO: capture times only."""

from __future__ import annotations

from dataclasses import dataclass

from correlate.call import Call

NS = 1_000_000_000
# An ended leg waits this long (capture time) for its partner to end: an SBC tears down
# both legs within a second or two; a partner still going after this is written apart.
LEG_WAIT_NS = 30 * NS
# Legs linked or waiting at once: as many as calls in progress on a busy probe.
MAX_LEGS = 20_000
SESSION_ID = "session-id"
NULL_UUID = "0" * 32


@dataclass
class Waiting:
    call: Call
    until_ns: int


class Legs:
    """Which calls are legs of one conversation, and the ended legs waiting for theirs."""

    def __init__(self, header: str = "") -> None:
        self.header = header.lower()
        """The header that carries the other leg's Call-ID ('' for none)."""
        self._by_sid: dict[str, Call] = {}
        self._by_cid: dict[str, Call] = {}
        self.partner: dict[int, Call] = {}
        """Call serial to its other leg (both ways)."""
        self.first: set[int] = set()
        """Serials of A-legs (the one that started first)."""
        self.waiting: dict[int, Waiting] = {}
        self.dropped = 0
        """Links not made because MAX_LEGS were held."""

    def headers(self) -> frozenset[str]:
        """INVITE headers the tracker must keep for linking."""
        return frozenset({SESSION_ID, self.header} - {""})

    def started(self, call: Call) -> None:
        """A call began: link it to the leg it continues, or remember it as a possible
        A-leg."""
        sid = _uuid(call.headers.get(SESSION_ID))
        ref = (call.headers.get(self.header) or [""])[0].strip() if self.header else ""
        partner = None
        if sid:
            partner = self._by_sid.get(sid)
        if partner is None and ref:
            partner = self._by_cid.get(ref)
        if partner is not None and partner.serial not in self.partner \
                and partner.serial != call.serial:
            self.partner[call.serial] = partner
            self.partner[partner.serial] = call
            self.first.add(partner.serial)
            return
        if len(self._by_sid) + len(self._by_cid) >= MAX_LEGS:
            self.dropped += 1
            return
        if sid:
            self._by_sid.setdefault(sid, call)
        if self.header:
            self._by_cid.setdefault(call.call_id, call)

    def ended(self, call: Call, now: int) -> Call | None:
        """A call ended: its partner if that one ended before (the pair is complete), else
        None (the call waits for its partner if it has one, see ``expired``)."""
        self._forget(call)
        partner = self.partner.get(call.serial)
        if partner is None:
            return None
        held = self.waiting.pop(partner.serial, None)
        if held is not None:
            self.partner.pop(call.serial, None)
            self.partner.pop(partner.serial, None)
            return held.call
        self.waiting[call.serial] = Waiting(call, now + LEG_WAIT_NS)
        return None

    def apart(self, call: Call) -> Call | None:
        """A call ended that is written on its own (legs not joined): its other leg, whose
        link to this one stays until it ends too."""
        self._forget(call)
        self.first.discard(call.serial)
        return self.partner.pop(call.serial, None)

    def holds(self, call: Call) -> bool:
        return call.serial in self.waiting

    def expired(self, now: int) -> list[Call]:
        """Ended legs whose partner did not end in time: written on their own."""
        gone = [w.call for w in self.waiting.values() if w.until_ns <= now]
        for c in gone:
            self.release(c)
        return gone

    def release(self, call: Call) -> None:
        self.waiting.pop(call.serial, None)
        partner = self.partner.pop(call.serial, None)
        if partner is not None:
            self.partner.pop(partner.serial, None)
        self.first.discard(call.serial)

    def all_waiting(self) -> list[Call]:
        calls = [w.call for w in self.waiting.values()]
        for c in calls:
            self.release(c)
        return calls

    def _forget(self, call: Call) -> None:
        sid = _uuid(call.headers.get(SESSION_ID))
        if sid and self._by_sid.get(sid) is call:
            del self._by_sid[sid]
        if self._by_cid.get(call.call_id) is call:
            del self._by_cid[call.call_id]


def _uuid(values: list[str] | None) -> str:
    """The local UUID of an RFC 7989 Session-ID value ('' when absent or null)."""
    if not values:
        return ""
    uuid = values[0].split(";", 1)[0].strip().lower()
    return "" if not uuid or uuid == NULL_UUID else uuid
