"""INVITE dialog tracker (RFC 3261 sections 12-15) as an explicit transition table.

Sans-IO: ``handle_sip`` takes a parsed message plus its capture time and addresses,
``handle_timer`` and ``finish`` take capture time; all return events. A message that does
not fit the table is counted on the call and leaves the state unchanged.
"""

from __future__ import annotations

import sys
from collections import Counter

from capture.decode import format_ip
from correlate.call import (
    CALLEE,
    CALLER,
    MAX_SIP_LOG,
    Call,
    Endpoint,
    MediaOffer,
    pack_sip,
)
from correlate.errors import SdpError
from correlate.events import CallFinished, CallStarted, Event, MediaChanged
from correlate.media import MediaTable
from correlate.policy import (
    MAX_HEADER_VALUE,
    MAX_IDENTITIES,
    PauseSpec,
    feed_digit,
    message_trigger,
    set_paused,
)
from correlate.sdp import Media, parse_sdp
from correlate.sip import SipMessage
from correlate.sipinfo import MAX_DIGITS, info_digit

Codecs = tuple[dict[int, tuple[str, int, int]], list[str], dict[int, str], str]
"""An m= line's rtpmap, payload types, fmtp and transport, shared between offers."""

# Dialogs tracked at once; a SIP flood must not exhaust memory. Beyond it new INVITEs are
# counted and ignored.
MAX_CALLS = 100_000

# States. FAILED is terminal like ENDED, except that a new initial INVITE in the same
# dialog (an authentication retry after 401/407, RFC 3261 section 22.2) revives it.
CALLING, PROCEEDING, EARLY, CONFIRMED, ENDED, FAILED = range(6)
STATE_NAMES = ("calling", "proceeding", "early", "confirmed", "ended", "failed")
TERMINAL = (ENDED, FAILED)

# Inputs
(
    IN_INVITE,
    IN_100,
    IN_18X,
    IN_2XX,
    IN_FAIL,
    IN_ACK,
    IN_BYE,
    IN_CANCEL,
    IN_OTHER,
    IN_NEW_INVITE,
) = range(10)

# (state, input) -> new state. Anything absent is illegal.
TRANSITIONS: dict[tuple[int, int], int] = {}
for _s in (CALLING, PROCEEDING, EARLY):
    TRANSITIONS[(_s, IN_INVITE)] = _s  # retransmission
    TRANSITIONS[(_s, IN_OTHER)] = _s  # PRACK, INFO, UPDATE and their responses
    TRANSITIONS[(_s, IN_100)] = max(_s, PROCEEDING)
    TRANSITIONS[(_s, IN_18X)] = EARLY
    TRANSITIONS[(_s, IN_2XX)] = CONFIRMED
    TRANSITIONS[(_s, IN_FAIL)] = FAILED
    TRANSITIONS[(_s, IN_CANCEL)] = ENDED
    TRANSITIONS[(_s, IN_NEW_INVITE)] = _s
    TRANSITIONS[(_s, IN_BYE)] = ENDED  # RFC 3261 section 15: caller may BYE an early dialog
for _i in (IN_INVITE, IN_100, IN_18X, IN_2XX, IN_FAIL, IN_ACK, IN_OTHER, IN_NEW_INVITE):
    # re-INVITEs and their responses (a failed re-INVITE leaves the session as it was)
    TRANSITIONS[(CONFIRMED, _i)] = CONFIRMED
TRANSITIONS[(CONFIRMED, IN_BYE)] = ENDED
for _i in range(10):
    # retransmissions, the ACK to a failure, the 200 to BYE, late responses
    TRANSITIONS[(ENDED, _i)] = ENDED
    TRANSITIONS[(FAILED, _i)] = FAILED
TRANSITIONS[(FAILED, IN_NEW_INVITE)] = CALLING


class DialogTracker:
    """Follows INVITE dialogs and keeps the media table in step with their SDP."""

    def __init__(
        self,
        media: MediaTable,
        inactivity_ns: int = 300 * 1_000_000_000,
        linger_ns: int = 2 * 1_000_000_000,
        max_calls: int = MAX_CALLS,
        unsignalled_ns: int = 30 * 1_000_000_000,
        keep_headers: frozenset[str] = frozenset(),
        pause: PauseSpec | None = None,
    ) -> None:
        self.media = media
        self.keep_headers = keep_headers
        """Lower-case names of the INVITE headers kept on each call (the policy's)."""
        self.pause = pause or PauseSpec()
        self.calls: dict[str, Call] = {}
        self.inactivity_ns = inactivity_ns
        """A call with no SIP or media for this long (capture time) is ended."""
        self.linger_ns = linger_ns
        """How long an ended call still collects media, for packets the mirror reordered."""
        self.unsignalled_ns = unsignalled_ns
        """An unsignalled call (RTP only) ends after this much silence on both flows."""
        self.max_calls = max_calls
        self.drops: Counter[str] = Counter()
        """Messages not applied, by reason."""
        self._serial = 0
        self._by_call_id: dict[str, list[str]] = {}
        self._orphans: dict[str, list[tuple[SipMessage, int, Endpoint, Endpoint]]] = {}
        self._orphan_count = 0
        self._codecs: dict[tuple[object, ...], Codecs] = {}
        """Codec lists seen in SDP, each kept once for all the calls that offer it."""

    def _shared(self, m: Media) -> Codecs:
        """An m= line's rtpmap, formats and fmtp as objects shared by every offer that has
        the same ones: a network offers a handful of codec lists, and each live call's own
        copies were over a kilobyte. Nothing changes them once parsed."""
        key = (tuple(m.rtpmap.items()), tuple(m.formats), tuple(m.fmtp.items()), m.proto)
        got = self._codecs.get(key)
        if got is None:
            got = (m.rtpmap, m.formats, m.fmtp, sys.intern(m.proto))
            if len(self._codecs) >= MAX_CODEC_LISTS:
                self._codecs.clear()
            self._codecs[key] = got
        return got

    def handle_sip(
        self, msg: SipMessage, ts_ns: int, src: Endpoint, dst: Endpoint, raw: bytes = b""
    ) -> list[Event]:
        """Apply one SIP message seen at capture time ``ts_ns`` from ``src`` to ``dst``;
        ``raw`` is the message as it was on the wire (kept for the call's ladder)."""
        events: list[Event] = []
        if msg.method == "REGISTER" or msg.cseq_method == "REGISTER":
            # RFC 3261 section 10: a registration is never part of a dialog, whatever its
            # Call-ID (the Recorder counts most of them so without parsing them)
            self.drops["sip_outside_invite_dialog"] += 1
            return events
        call = self._find(msg)
        if call is None:
            if msg.method != "INVITE":
                if msg.status and msg.cseq_method == "INVITE" and self._hold_orphan(
                    msg, ts_ns, src, dst
                ):
                    return events  # a response that overtook its INVITE on the mirror
                self.drops["sip_outside_invite_dialog"] += 1
                return events
            if msg.to.tag:
                # A re-INVITE whose dialog began before the capture started.
                self.drops["sip_reinvite_without_dialog"] += 1
                return events
            if len(self.calls) >= self.max_calls and not self._evict():
                self.drops["call_table_full"] += 1
                return events
            self._serial += 1
            # RFC 3261 section 12: a dialog is Call-ID plus tags; two legs of a B2BUA may
            # share the Call-ID and differ in From-tag.
            key = f"{msg.call_id}\x00{msg.from_.tag}"
            prior = self.calls.get(key)
            if prior is not None and prior.remote:
                # its media was recorded here for another process: the call goes on in
                # the same spool, now with its signalling
                del self.calls[key]
                self.media.drop_call(key)
                call = Call(key, msg.call_id, ts_ns, prior.serial)
                call.flows, call.flow_ids = prior.flows, prior.flow_ids
            else:
                if prior is not None:  # the same dialog again after it ended: a new call
                    key = f"{key}\x00{self._serial}"
                call = Call(key, msg.call_id, ts_ns, self._serial)
            call.caller_uri, call.caller_name = msg.from_.uri, msg.from_.display
            call.callee_uri, call.callee_name = msg.to.uri, msg.to.display
            call.caller_tag = msg.from_.tag
            call.caller_signal, call.callee_signal = src, dst
            call.user_agent = msg.header("user-agent")
            call.invite_cseq = msg.cseq
            for name in self.keep_headers:
                values = msg.headers.get(name)
                if values:
                    call.headers[name] = [v[:MAX_HEADER_VALUE] for v in values[:MAX_IDENTITIES]]
            self.calls[key] = call
            keys = self._by_call_id.setdefault(msg.call_id, [])
            keys.append(key)
            del keys[:-MAX_DIALOGS_PER_CALL_ID]
            events.append(CallStarted(call))
            events += self._apply_message(call, msg, ts_ns, src, dst, raw)
            for held in self._orphans.pop(msg.call_id, []):
                events += self.handle_sip(*held)
            return events
        return events + self._apply_message(call, msg, ts_ns, src, dst, raw)

    def _apply_message(self, call: Call, msg: SipMessage, ts_ns: int, src: Endpoint,
                      dst: Endpoint, raw: bytes = b"") -> list[Event]:
        events: list[Event] = []
        call.last_ns = max(call.last_ns, ts_ns)
        call.sip_messages += 1
        if raw and len(call.sip_log) < MAX_SIP_LOG:
            call.sip_log.append(pack_sip(ts_ns, src[0], src[1], dst[0], dst[1], raw))
        if call.seen_before(msg.method, msg.status, msg.cseq):
            call.retransmissions += 1
        inp = self._input(msg, call)
        new = TRANSITIONS.get((call.state, inp))
        if new is None:
            call.illegal_transitions += 1
            self.drops["sip_illegal_transition"] += 1
            return events
        sender = self._sender(call, msg)
        pause = self.pause
        if pause.header or pause.info_type:
            on = message_trigger(pause, msg.header(pause.header) if pause.header else "",
                                 msg.header("content-type") if msg.method == "INFO" else "",
                                 msg.body)
            if on is not None:
                set_paused(call, ts_ns, on)
        if msg.method == "INFO":
            digit = info_digit(msg.header("content-type"), msg.body)
            if digit is not None:
                # digits keyed in while paused (a card number) are not kept
                if not call.paused and len(call.sip_dtmf) < MAX_DIGITS:
                    call.sip_dtmf.append((ts_ns, sender, digit[0], digit[1]))
                feed_digit(call, pause, ts_ns, digit[0])
        if msg.status and msg.to.tag and not call.callee_tag and msg.cseq_method == "INVITE":
            call.callee_tag = msg.to.tag
        if call.state not in TERMINAL or new not in TERMINAL:
            self._apply(call, inp, new, msg, ts_ns, sender)
        body = msg.sdp() if call.state not in TERMINAL else None
        # the callee's dialog tag, to tell forked branches' media apart
        branch = (msg.to.tag if msg.status else msg.from_.tag) if sender == CALLEE else ""
        if body is not None and self._take_sdp(call, sender, body, ts_ns, branch):
            events.append(MediaChanged(call, sender))
        return events

    def restore(self, call: Call) -> None:
        """Take up a call a previous process had in progress (from the store): the dialog,
        and where each side's media arrives, as of its latest SDP."""
        if call.key in self.calls or len(self.calls) >= self.max_calls:
            return
        self.calls[call.key] = call
        self._serial = max(self._serial, call.serial)
        keys = self._by_call_id.setdefault(call.call_id, [])
        keys.append(call.key)
        del keys[:-MAX_DIALOGS_PER_CALL_ID]
        if call.unsignalled and call.flows:
            self.media.set_side(call.key, CALLER, [call.flows[0][0]], [])
            self.media.set_side(call.key, CALLEE, [call.flows[0][1]], [])
            return
        for side in (CALLER, CALLEE):
            offers = call.offers[side]
            if offers:
                latest = max(o.time_ns for o in offers)
                self.media.set_side(call.key, side, [(o.addr, o.port) for o in offers
                                                     if o.time_ns == latest], [])

    def start_serials_at(self, serial: int) -> None:
        """Number new calls from here on (a restarted process must not reuse the serials,
        which name spool files, of calls an earlier one handed to the writers)."""
        self._serial = max(self._serial, serial)

    def _evict(self) -> bool:
        """Make room in a full table by dropping the oldest INVITE nobody answered at all
        (a flood must not keep real calls out)."""
        for call in self.calls.values():
            if call.state == CALLING and not call.responded and not call.flows:
                self._finish(call, "evicted", "timeout")
                self.drops["unanswered_invite_evicted"] += 1
                return True
        return False

    def _find(self, msg: SipMessage) -> Call | None:
        """The dialog a message belongs to: same Call-ID, and the caller's tag in From (the
        caller's requests and their responses) or in To (the callee's requests)."""
        keys = self._by_call_id.get(msg.call_id)
        if not keys:
            return None
        ftag, ttag = msg.from_.tag, msg.to.tag
        found = None
        for key in keys:
            call = self.calls.get(key)
            if call is None:
                continue
            if call.caller_tag == ftag or (ttag and call.caller_tag == ttag):
                found = call  # the newest dialog wins (Call-ID reuse)
            elif not call.caller_tag and len(keys) == 1:
                found = call  # RFC 2543 peers send no tags
        return found

    def _hold_orphan(self, msg: SipMessage, ts_ns: int, src: Endpoint, dst: Endpoint) -> bool:
        held = self._orphans.setdefault(msg.call_id, [])
        if self._orphan_count >= MAX_ORPHANS or len(held) >= MAX_ORPHANS_PER_CALL_ID:
            if not held:
                del self._orphans[msg.call_id]
            return False
        held.append((msg, ts_ns, src, dst))
        self._orphan_count += 1
        return True

    @staticmethod
    def _input(msg: SipMessage, call: Call) -> int:
        if msg.method == "INVITE" and not msg.to.tag and msg.cseq > call.invite_cseq:
            call.invite_cseq = msg.cseq
            return IN_NEW_INVITE
        if msg.method:
            return {"INVITE": IN_INVITE, "ACK": IN_ACK, "BYE": IN_BYE, "CANCEL": IN_CANCEL}.get(
                msg.method, IN_OTHER
            )
        if msg.cseq_method != "INVITE":
            return IN_OTHER
        if msg.status == 100:
            return IN_100
        if msg.status < 200:
            return IN_18X
        if msg.status < 300:
            return IN_2XX
        return IN_FAIL

    @staticmethod
    def _sender(call: Call, msg: SipMessage) -> int:
        """Which side sent ``msg``: From identifies the request's originator (RFC 3261 8.1.1.3)."""
        if call.caller_tag:
            from_caller = msg.from_.tag == call.caller_tag
        else:
            from_caller = msg.from_.uri == call.caller_uri
        if msg.is_request:
            return CALLER if from_caller else CALLEE
        return CALLEE if from_caller else CALLER

    def _apply(
        self, call: Call, inp: int, new: int, msg: SipMessage, ts_ns: int, sender: int
    ) -> None:
        old = call.state
        call.state = new
        if msg.status:
            call.responded = True
        if msg.method in ("BYE", "CANCEL") and call.reason is None:
            call.reason = parse_reason(msg.header("reason"))
        if old == FAILED:  # revived by an authentication retry
            call.status, call.final_code, call.final_reason = "setup", 0, ""
            call.end_ns = call.ended_ns = 0
            call.end_reason = ""
        elif inp == IN_18X and old != CONFIRMED:
            call.status = "ringing"
            call.ringing_ns = call.ringing_ns or ts_ns
        elif inp == IN_2XX and old != CONFIRMED:
            # Forking (RFC 3261 section 13.2.2.4): the branch that answers is the callee.
            call.callee_tag = msg.to.tag or call.callee_tag
            call.answer_ns = ts_ns
            call.final_code = msg.status
            call.final_reason = msg.reason
            call.status = "answered"
        elif new in TERMINAL:
            call.end_ns = ts_ns
            call.ended_ns = ts_ns
            if inp == IN_FAIL:
                call.final_code = msg.status
                call.final_reason = msg.reason
                call.status = "failed"
                call.end_reason = "failure"
            elif inp == IN_CANCEL:
                call.status = "cancelled"
                call.end_reason = "cancel"
                call.hangup_by = "caller"
            else:
                call.status = "completed" if old == CONFIRMED else "cancelled"
                call.end_reason = "bye"
                call.hangup_by = "caller" if sender == CALLER else "callee"

    def _take_sdp(self, call: Call, sender: int, body: bytes, ts_ns: int, branch: str = ""
                  ) -> bool:
        try:
            sdp = parse_sdp(body)
        except SdpError:
            self.drops["bad_sdp"] += 1
            return False
        offers: list[MediaOffer] = []
        other: list[Endpoint] = []
        held: list[MediaOffer] = []
        for m in sdp.media:
            if m.port and m.kind == "audio" and m.addr is not None and not any(m.addr):
                # hold by c=0.0.0.0 (RFC 3264 section 8.4): remembered, nothing to listen on
                held.append(MediaOffer(m.addr, m.port, m.rtpmap, m.formats, "inactive",
                                       m.ptime, ts_ns))
                continue
            if m.port == 0 or m.addr is None or not any(m.addr):
                continue  # a rejected stream
            if m.kind != "audio":
                other.append((m.addr, m.port))
                continue
            rtpmap, formats, fmtp, proto = self._shared(m)
            offer = MediaOffer(m.addr, m.port, rtpmap, formats, sys.intern(m.direction),
                               m.ptime, ts_ns)
            offer.fmtp, offer.proto, offer.crypto = fmtp, proto, m.crypto
            offer.tag = branch
            offers.append(offer)
        if held and not offers:
            prev = call.offers[sender]
            if not prev or prev[-1].direction != "inactive" or any(prev[-1].addr):
                prev.append(held[0])
                del prev[:-MAX_OFFERS_PER_SIDE]
            return False
        if not offers and not other:
            return False
        prev = call.offers[sender]
        def same(o: MediaOffer) -> tuple[object, ...]:
            return o.addr, o.port, o.direction, tuple(o.formats)

        if offers and prev and [same(o) for o in prev[-len(offers):]] == [
            same(o) for o in offers
        ] and not other:
            # The same media again (retransmission, session refresh): nothing to record.
            return False
        prev.extend(offers)
        # Bound: a side's offer history is a handful per call; cap hostile re-INVITE loops.
        del prev[:-MAX_OFFERS_PER_SIDE]
        self.media.set_side(call.key, sender, [(o.addr, o.port) for o in offers], other)
        return True

    def add_unsignalled(self, ts_ns: int, src: Endpoint, dst: Endpoint) -> Call | None:
        """A call for RTP whose signalling was not captured (one-sided mirror, SIP over TLS):
        the first flow's sender is the caller; the reverse flow joins it through the media
        table. None when the call table is full."""
        if len(self.calls) >= self.max_calls:
            self.drops["call_table_full"] += 1
            return None
        a, b = _ep_text(src), _ep_text(dst)
        key = f"rtp {a} {b}"
        self._serial += 1
        call = Call(key, f"unsignalled-{a}-{b}", ts_ns, self._serial)
        call.caller_uri, call.callee_uri = f"rtp:{a}", f"rtp:{b}"
        call.caller_signal, call.callee_signal = src, dst
        call.state, call.status, call.unsignalled = CONFIRMED, "unsignalled", True
        self.calls[key] = call
        self.media.set_side(key, CALLER, [src], [])
        self.media.set_side(key, CALLEE, [dst], [])
        return call

    def add_remote(self, key: str, call_id: str, start_ns: int, owner: str, now_ns: int
                   ) -> Call | None:
        """A call whose signalling ``owner`` sees, for the media that reaches this process
        (it ends by ``end_remote`` or by inactivity). None when the call table is full."""
        if len(self.calls) >= self.max_calls:
            self.drops["call_table_full"] += 1
            return None
        self._serial += 1
        call = Call(key, call_id, start_ns, self._serial)
        call.state, call.status, call.remote, call.responded = CONFIRMED, "answered", owner, True
        call.last_ns = max(now_ns, start_ns)
        self.calls[key] = call
        return call

    def rekey(self, call: Call, key: str) -> None:
        """The call goes by ``key`` from now on (its media table entries are dropped: the
        caller sets the new ones)."""
        del self.calls[call.key]
        self.media.drop_call(call.key)
        call.key = key
        self.calls[key] = call

    def end_remote(self, call: Call, now_ns: int) -> None:
        """The owner of a remote call saw its dialog end: it lingers, then finishes."""
        if call.state not in TERMINAL:
            call.state, call.ended_ns, call.end_ns = ENDED, now_ns, now_ns
            call.end_reason = "bye"

    def handle_timer(self, now_ns: int) -> list[Event]:
        """Finish calls whose linger expired or that fell silent; ``now_ns`` is capture time."""
        done: list[Event] = []
        for call_id, held in list(self._orphans.items()):
            if now_ns - held[0][1] >= ORPHAN_NS:  # its INVITE never came
                del self._orphans[call_id]
                self._orphan_count -= len(held)
                self.drops["sip_outside_invite_dialog"] += len(held)
        for call in list(self.calls.values()):
            if call.state in TERMINAL:
                if now_ns - call.ended_ns >= self.linger_ns:
                    done.append(self._finish(call))
            elif now_ns - call.last_ns >= (
                self.unsignalled_ns if call.unsignalled else self.inactivity_ns
            ) or (call.state == CALLING and not call.responded and not call.flows
                  and now_ns - call.start_ns >= SETUP_NS):
                done.append(self._finish(call, "rtp-timeout", "timeout"))
        return done

    def finish(self) -> list[Event]:
        """End of input: finish every call still open."""
        for held in self._orphans.values():
            self.drops["sip_outside_invite_dialog"] += len(held)
        self._orphans.clear()
        self._orphan_count = 0
        calls = list(self.calls.values())
        return [self._finish(call, "end-of-input", "incomplete") for call in calls]

    def _finish(self, call: Call, reason: str = "", unanswered: str = "") -> CallFinished:
        """Remove a call; one still open ends now with ``reason`` (``unanswered`` as its
        status when it never got a final response)."""
        if call.state not in TERMINAL:
            call.end_ns = call.last_ns
            call.end_reason = reason
            if call.status in ("setup", "ringing"):
                call.status = unanswered
        if call.status == "answered":
            call.status = "completed"
        call.state = ENDED
        del self.calls[call.key]
        keys = self._by_call_id.get(call.call_id)
        if keys is not None:
            if call.key in keys:
                keys.remove(call.key)
            if not keys:
                del self._by_call_id[call.call_id]
        self.media.drop_call(call.key)
        return CallFinished(call)


def parse_reason(value: str) -> tuple[str, int, str] | None:
    """RFC 3326 Reason: ``Q.850;cause=16;text="Normal call clearing"``."""
    proto, _, params = value.partition(";")
    cause, text = -1, ""
    for param in params.split(";"):
        key, _, val = param.partition("=")
        key = key.strip().lower()
        if key == "cause" and val.strip().isdigit():
            cause = int(val.strip())
        elif key == "text":
            text = val.strip().strip('"')
    return (proto.strip(), cause, text) if proto.strip() and 0 <= cause <= 32767 else None


def _ep_text(ep: Endpoint) -> str:
    host = format_ip(ep[0])
    return f"[{host}]:{ep[1]}" if ":" in host else f"{host}:{ep[1]}"


# Media announcements remembered per side of a call (re-INVITE history for the summary).
MAX_OFFERS_PER_SIDE = 16
# Distinct codec lists shared between offers (past it the cache starts again): far more
# than the endpoints of one network announce.
MAX_CODEC_LISTS = 1024
# An INVITE with no response at all is over after RFC 3261 Timer B (64 * T1 = 32 s).
SETUP_NS = 32 * 1_000_000_000
# Dialogs sharing one Call-ID (B2BUA legs, forks, reuse) followed at once.
MAX_DIALOGS_PER_CALL_ID = 16
# Responses held while their INVITE may still arrive (mirror reordering): how many, how long.
MAX_ORPHANS = 1024
MAX_ORPHANS_PER_CALL_ID = 8
ORPHAN_NS = 2 * 1_000_000_000
