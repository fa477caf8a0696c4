from __future__ import annotations

from correlate.call import CALLEE, CALLER, Call
from correlate.dialog import CONFIRMED, ENDED, FAILED, TRANSITIONS, DialogTracker
from correlate.events import CallFinished, CallStarted, MediaChanged
from correlate.media import RTCP, RTP, MediaTable
from correlate.sip import parse_sip
from tests.helpers import ip4

S = 1_000_000_000
A = (ip4("192.0.2.1"), 5060)
B = (ip4("198.51.100.1"), 5060)


def sdp(ip: str, port: int, media: str = "audio") -> str:
    return f"v=0\r\no=- 1 1 IN IP4 {ip}\r\nc=IN IP4 {ip}\r\nm={media} {port} RTP/AVP 0\r\n"


def msg(start: str, cseq: str, from_tag: str = "ft", to_tag: str = "", body: str = "",
        call_id: str = "c1") -> bytes:
    to = "<sip:b@y>" + (f";tag={to_tag}" if to_tag else "")
    hdrs = [f"Call-ID: {call_id}", f"From: <sip:a@x>;tag={from_tag}", f"To: {to}",
            f"CSeq: {cseq}"]
    if body:
        hdrs.append("Content-Type: application/sdp")
    hdrs.append(f"Content-Length: {len(body)}")
    return (start + "\r\n" + "\r\n".join(hdrs) + "\r\n\r\n" + body).encode()


def call_of(t: DialogTracker, call_id: str) -> Call:
    (call,) = [c for c in t.calls.values() if c.call_id == call_id]
    return call


def feed(t: DialogTracker, data: bytes, ts: int, fwd: bool = True) -> list[object]:
    return list(t.handle_sip(parse_sip(data), ts, A if fwd else B, B if fwd else A))


def basic_call(t: DialogTracker, bye_from_callee: bool = False) -> None:
    ev = feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", body=sdp("192.0.2.1", 4000)), 0)
    assert isinstance(ev[0], CallStarted) and isinstance(ev[1], MediaChanged)
    feed(t, msg("SIP/2.0 100 Trying", "1 INVITE"), S // 10, fwd=False)
    feed(t, msg("SIP/2.0 180 Ringing", "1 INVITE", to_tag="tt"), S // 5, fwd=False)
    ev = feed(t, msg("SIP/2.0 200 OK", "1 INVITE", to_tag="tt", body=sdp("198.51.100.1", 6000)),
              S, fwd=False)
    assert isinstance(ev[0], MediaChanged) and ev[0].side == CALLEE  # type: ignore[attr-defined]
    feed(t, msg("ACK sip:b@y SIP/2.0", "1 ACK", to_tag="tt"), S + 1)
    if bye_from_callee:
        feed(t, msg("BYE sip:a@x SIP/2.0", "1 BYE", from_tag="tt", to_tag="ft"), 10 * S, False)
    else:
        feed(t, msg("BYE sip:b@y SIP/2.0", "2 BYE", to_tag="tt"), 10 * S)


def test_basic_call_and_media_table() -> None:
    media = MediaTable()
    t = DialogTracker(media, linger_ns=2 * S)
    basic_call(t)
    call = call_of(t, "c1")
    assert call.state == ENDED and call.status == "completed" and call.hangup_by == "caller"
    assert call.answer_ns == S and call.end_ns == 10 * S and call.callee_tag == "tt"
    assert media.get((ip4("192.0.2.1"), 4000)) == (call.key, CALLER, RTP)
    assert media.get((ip4("192.0.2.1"), 4001)) == (call.key, CALLER, RTCP)
    assert media.get((ip4("198.51.100.1"), 6000)) == (call.key, CALLEE, RTP)
    assert t.handle_timer(11 * S) == []  # still lingering
    done = t.handle_timer(12 * S)
    assert len(done) == 1 and isinstance(done[0], CallFinished)
    assert not t.calls and len(media) == 0


def test_bye_from_callee() -> None:
    t = DialogTracker(MediaTable())
    basic_call(t, bye_from_callee=True)
    assert call_of(t, "c1").hangup_by == "callee"


def test_failure_then_auth_retry_revives_the_call() -> None:
    t = DialogTracker(MediaTable())
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", body=sdp("192.0.2.1", 4000)), 0)
    feed(t, msg("SIP/2.0 407 Proxy Auth", "1 INVITE", to_tag="p"), 10, fwd=False)
    assert call_of(t, "c1").state == FAILED and call_of(t, "c1").final_code == 407
    feed(t, msg("ACK sip:b@y SIP/2.0", "1 ACK", to_tag="p"), 20)
    feed(t, msg("INVITE sip:b@y SIP/2.0", "2 INVITE", body=sdp("192.0.2.1", 4000)), 30)
    call = call_of(t, "c1")
    assert call.status == "setup" and call.final_code == 0
    feed(t, msg("SIP/2.0 200 OK", "2 INVITE", to_tag="tt"), 40, fwd=False)
    assert call.state == CONFIRMED and call.status == "answered"


def test_cancel_and_final_failure() -> None:
    t = DialogTracker(MediaTable())
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE"), 0)
    feed(t, msg("CANCEL sip:b@y SIP/2.0", "1 CANCEL"), 5)
    assert call_of(t, "c1").status == "cancelled" and call_of(t, "c1").end_reason == "cancel"
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", call_id="c2"), 0)
    feed(t, msg("SIP/2.0 486 Busy Here", "1 INVITE", to_tag="x", call_id="c2"), 5, fwd=False)
    assert call_of(t, "c2").status == "failed" and call_of(t, "c2").final_reason == "Busy Here"


def test_illegal_transition_leaves_state() -> None:
    t = DialogTracker(MediaTable())
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE"), 0)
    feed(t, msg("ACK sip:b@y SIP/2.0", "1 ACK"), 1)  # ACK before any final response
    call = call_of(t, "c1")
    assert call.illegal_transitions == 1 and call.status == "setup"
    assert t.drops["sip_illegal_transition"] == 1


def test_messages_outside_a_dialog_are_counted() -> None:
    t = DialogTracker(MediaTable())
    feed(t, msg("OPTIONS sip:b@y SIP/2.0", "1 OPTIONS"), 0)
    feed(t, msg("INVITE sip:b@y SIP/2.0", "5 INVITE", to_tag="x"), 0)
    assert t.drops == {"sip_outside_invite_dialog": 1, "sip_reinvite_without_dialog": 1}
    assert not t.calls


def test_inactivity_timeout_and_end_of_input() -> None:
    t = DialogTracker(MediaTable(), inactivity_ns=30 * S)
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE"), 0)
    feed(t, msg("SIP/2.0 200 OK", "1 INVITE", to_tag="tt"), S, fwd=False)
    call_of(t, "c1").last_ns = 20 * S  # media seen (the importer keeps this up to date)
    assert t.handle_timer(49 * S) == []
    (done,) = t.handle_timer(50 * S)
    assert done.call.end_reason == "rtp-timeout" and done.call.end_ns == 20 * S  # type: ignore[attr-defined]
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", call_id="c3"), 60 * S)
    (done,) = t.finish()
    assert done.call.status == "incomplete" and done.call.end_reason == "end-of-input"  # type: ignore[attr-defined]


def test_call_table_bound_evicts_unanswered_invites_first() -> None:
    t = DialogTracker(MediaTable(), max_calls=2)
    for i in range(2):
        feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", call_id=f"c{i}"), 0)
        feed(t, msg("SIP/2.0 100 Trying", "1 INVITE", call_id=f"c{i}"), 1, fwd=False)
    for i in range(2, 4):
        feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", call_id=f"c{i}"), 2)
    assert len(t.calls) == 2 and t.drops["call_table_full"] == 2  # answered ones stay
    flood = DialogTracker(MediaTable(), max_calls=2)
    for i in range(5):
        feed(flood, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", call_id=f"f{i}"), i)
    assert {c.call_id for c in flood.calls.values()} == {"f3", "f4"}
    assert flood.drops["unanswered_invite_evicted"] == 3


def test_invite_without_any_response_ends_after_timer_b() -> None:
    t = DialogTracker(MediaTable())
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE"), 0)
    assert t.handle_timer(31 * S) == []
    (done,) = t.handle_timer(32 * S)
    assert done.call.status == "timeout"  # type: ignore[attr-defined]


def test_reinvite_moves_media_and_t38_offer_keeps_audio() -> None:
    media = MediaTable()
    t = DialogTracker(media)
    basic_call_no_bye(t)
    feed(t, msg("INVITE sip:a@x SIP/2.0", "1 INVITE", from_tag="tt", to_tag="ft",
                body=sdp("198.51.100.1", 6100)), 5 * S, fwd=False)
    assert media.get((ip4("198.51.100.1"), 6000)) is None
    assert media.get((ip4("198.51.100.1"), 6100)) == (call_of(t, "c1").key, CALLEE, RTP)
    feed(t, msg("INVITE sip:b@y SIP/2.0", "3 INVITE", to_tag="tt",
                body=sdp("192.0.2.1", 4000, "image")), 6 * S)
    assert media.get((ip4("192.0.2.1"), 4000)) == (call_of(t, "c1").key, CALLER, RTP)


def basic_call_no_bye(t: DialogTracker) -> None:
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", body=sdp("192.0.2.1", 4000)), 0)
    feed(t, msg("SIP/2.0 200 OK", "1 INVITE", to_tag="tt", body=sdp("198.51.100.1", 6000)),
         S, fwd=False)


def test_transition_table_is_total_for_terminal_states() -> None:
    for state in (ENDED, FAILED):
        assert all((state, i) in TRANSITIONS for i in range(10))


def test_hold_with_zero_address_is_remembered_and_keeps_the_endpoints() -> None:
    media = MediaTable()
    t = DialogTracker(media)
    basic_call_no_bye(t)
    hold = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n"
    feed(t, msg("INVITE sip:b@y SIP/2.0", "3 INVITE", to_tag="tt", body=hold), 5 * S)
    call = call_of(t, "c1")
    assert [o.direction for o in call.offers[CALLER]] == ["sendrecv", "inactive"]
    assert media.get((ip4("192.0.2.1"), 4000)) == (call.key, CALLER, RTP)


def test_signalling_metrics() -> None:
    from correlate.dialog import parse_reason

    t = DialogTracker(MediaTable())
    invite = msg("INVITE sip:b@y SIP/2.0", "1 INVITE", body=sdp("192.0.2.1", 4000))
    feed(t, invite, 0)
    feed(t, invite, S // 2)  # retransmitted after T1
    feed(t, msg("SIP/2.0 180 Ringing", "1 INVITE", to_tag="tt"), 2 * S, fwd=False)
    feed(t, msg("SIP/2.0 200 OK", "1 INVITE", to_tag="tt"), 5 * S, fwd=False)
    bye = msg("BYE sip:b@y SIP/2.0", "2 BYE", to_tag="tt").replace(
        b"Content-Length", b'Reason: Q.850;cause=16;text="Normal call clearing"\r\nContent-Length')
    feed(t, bye, 9 * S)
    call = call_of(t, "c1")
    assert call.ringing_ns == 2 * S and call.answer_ns == 5 * S and call.retransmissions == 1
    assert call.reason == ("Q.850", 16, "Normal call clearing")
    assert parse_reason("SIP ;cause=200 ;text=\"Call completed elsewhere\"") == (
        "SIP", 200, "Call completed elsewhere")
    assert parse_reason("") is None and parse_reason("Q.850;cause=x") is None


def test_offers_with_the_same_codecs_share_one_copy_and_the_log_reads_back() -> None:
    from correlate.call import sip_entries

    t = DialogTracker(MediaTable())
    one = msg("INVITE sip:b@y SIP/2.0", "1 INVITE", body=sdp("192.0.2.1", 4000), call_id="c1")
    two = msg("INVITE sip:b@y SIP/2.0", "1 INVITE", body=sdp("192.0.2.9", 4100), call_id="c2")
    other = msg("INVITE sip:b@y SIP/2.0", "1 INVITE",
                body=sdp("192.0.2.7", 4200).replace("RTP/AVP 0", "RTP/AVP 8"), call_id="c3")
    for ts, data in enumerate((one, two, other)):
        t.handle_sip(parse_sip(data), ts, A, B, data)
    a, b, c = (call_of(t, x).offers[CALLER][0] for x in ("c1", "c2", "c3"))
    assert a.rtpmap is b.rtpmap and a.formats is b.formats and a.fmtp is b.fmtp
    assert a.addr != b.addr and a.port != b.port
    assert c.formats == ["8"] and c.formats is not a.formats
    # each message kept once, compactly, and read back as it was seen
    assert list(sip_entries(call_of(t, "c2").sip_log)) == [(1, A[0], A[1], B[0], B[1], two)]
    # a log stored as tuples (jobs written before the compact form) reads as it is
    old = (5, A[0], A[1], B[0], B[1], b"BYE")
    assert list(sip_entries([old])) == [old]


def test_a_registration_is_never_part_of_a_dialog() -> None:
    """RFC 3261 section 10: a REGISTER and its responses, even with a dialog's Call-ID."""
    t = DialogTracker(MediaTable(), linger_ns=2 * S)
    feed(t, msg("INVITE sip:b@y SIP/2.0", "1 INVITE", body=sdp("192.0.2.1", 4000)), 0)
    for data in (msg("REGISTER sip:y SIP/2.0", "2 REGISTER"),
                 msg("SIP/2.0 200 OK", "2 register", to_tag="tt")):
        assert feed(t, data, S) == []
    assert call_of(t, "c1").sip_messages == 1
    assert t.drops["sip_outside_invite_dialog"] == 2
