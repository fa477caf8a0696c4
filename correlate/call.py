"""The call model shared by the dialog tracker, the importer and the writer."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

from capture.decode import format_ip

CALLER = 0
CALLEE = 1
SIDE_NAMES = ("caller", "callee")

Endpoint = tuple[bytes, int]
"""(packed IP address, UDP port)."""

Flow = tuple[Endpoint, Endpoint, int, int, int]
"""A media 5-tuple of a call: (source, destination, side announced at the destination or -1,
side announced at the source or -1, 0 for RTP / 1 for RTCP), as seen at its first packet."""

# Messages remembered per call to spot retransmissions: a call exchanges a few dozen.
MAX_SEEN_MESSAGES = 32
# Distinct media flows kept per call (index fits the spool's uint16); a normal call has 2-4.
MAX_FLOWS = 256
# SIP messages kept per call for its ladder and SIP pcap: far more than a real call sends
# (a long call with session timers and re-INVITEs sends dozens); a flood is cut there.
MAX_SIP_LOG = 1000

SipEntry = tuple[int, bytes, int, bytes, int, bytes]
"""A SIP message as seen: (capture time, source address, port, destination address, port,
message bytes)."""

# A kept SIP message is one bytes object, this header then both addresses and the message:
# a tuple of six objects costs about 280 bytes more, and a live call keeps several.
_SIP_HEAD = struct.Struct("<qHHBB")


def pack_sip(ts_ns: int, src: bytes, sport: int, dst: bytes, dport: int, raw: bytes) -> bytes:
    """One SIP message of a call's log in its compact form."""
    return b"".join((_SIP_HEAD.pack(ts_ns, sport, dport, len(src), len(dst)), src, dst, raw))


def sip_entries(log: Iterable[bytes | SipEntry]) -> Iterator[SipEntry]:
    """A call's SIP log as (time, source, port, destination, port, message) tuples; a log
    stored as tuples (jobs from before the compact form) is read as it is."""
    head = _SIP_HEAD.size
    for e in log:
        if not isinstance(e, bytes):
            yield e
            continue
        ts, sport, dport, ns, nd = _SIP_HEAD.unpack_from(e)
        yield ts, e[head:head + ns], sport, e[head + ns:head + ns + nd], dport, \
            e[head + ns + nd:]


class MediaOffer:
    """One audio m= line a party announced: where it receives and with which codecs."""

    __slots__ = (
        "addr", "port", "rtpmap", "formats", "direction", "ptime", "time_ns", "fmtp", "proto",
        "crypto", "tag",
    )

    def __init__(
        self,
        addr: bytes,
        port: int,
        rtpmap: dict[int, tuple[str, int, int]],
        formats: list[str],
        direction: str,
        ptime: int,
        time_ns: int,
    ) -> None:
        self.addr = addr
        """Packed receive address."""
        self.port = port
        """Receive port (RTP; RTCP is port + 1)."""
        self.rtpmap = rtpmap
        """Payload type to (encoding, clock rate, channels), from a=rtpmap."""
        self.formats = formats
        """Payload types offered, in preference order."""
        self.direction = direction
        """sendrecv, sendonly, recvonly or inactive."""
        self.ptime = ptime
        """Packet time in ms, 0 when not announced."""
        self.time_ns = time_ns
        """Capture time of the message that announced it."""
        self.fmtp: dict[int, str] = {}
        """Payload type to its a=fmtp parameters."""
        self.proto = "RTP/AVP"
        """Transport protocol of the m= line (RTP/SAVP means SRTP)."""
        self.crypto: list[str] = []
        """a=crypto values (RFC 4568): the keys this party sends with."""
        self.tag = ""
        """For the callee's media, the To-tag of its branch (forking tells them apart)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "address": format_ip(self.addr),
            "port": self.port,
            "direction": self.direction,
            "payload_types": self.formats,
            "rtpmap": {str(k): f"{v[0]}/{v[1]}" + (f"/{v[2]}" if v[2] != 1 else "")
                       for k, v in sorted(self.rtpmap.items())},
        }


class Call:
    """One INVITE dialog as seen on the wire."""

    __slots__ = (
        "key",
        "call_id",
        "caller_uri",
        "caller_name",
        "callee_uri",
        "callee_name",
        "caller_tag",
        "callee_tag",
        "caller_signal",
        "callee_signal",
        "state",
        "start_ns",
        "answer_ns",
        "end_ns",
        "last_ns",
        "status",
        "final_code",
        "final_reason",
        "end_reason",
        "hangup_by",
        "offers",
        "user_agent",
        "ended_ns",
        "illegal_transitions",
        "sip_messages",
        "sip_log",
        "invite_cseq",
        "flows",
        "flow_ids",
        "serial",
        "sip_dtmf",
        "unsignalled",
        "video_span",
        "responded",
        "ringing_ns",
        "reason",
        "retransmissions",
        "headers",
        "pauses",
        "pause_digits",
        "event_ts",
        "decision",
        "source",
        "vlan",
        "remote",
        "_seen",
    )

    def __init__(self, key: str, call_id: str, start_ns: int, serial: int = 0) -> None:
        self.serial = serial
        """Number unique to this call within one tracker (names its spool)."""
        self.ringing_ns = 0
        """Capture time of the first 18x (post-dial delay ends there), 0 when none."""
        self.reason: tuple[str, int, str] | None = None
        """Reason header of the BYE or CANCEL (RFC 3326): (protocol, cause, text)."""
        self.retransmissions = 0
        """SIP messages seen again (same method or status, same CSeq)."""
        self._seen: list[tuple[str, int, int]] = []
        self.responded = False
        """Whether any response to the INVITE was seen."""
        self.video_span = (0, 0)
        """Capture times of the first and last non-audio media packet (video, T.38)."""
        self.unsignalled = False
        """True for RTP recorded without any captured signalling."""
        self.sip_dtmf: list[tuple[int, int, str, float]] = []
        """DTMF from SIP INFO: (capture time, sending side, digit, duration ms)."""
        self.key = key
        """Table key of the dialog."""
        self.call_id = call_id
        """SIP Call-ID."""
        self.caller_uri = ""
        """From URI of the initial INVITE."""
        self.caller_name = ""
        """From display name."""
        self.callee_uri = ""
        """To URI of the initial INVITE."""
        self.callee_name = ""
        """To display name."""
        self.caller_tag = ""
        """From tag of the initial INVITE."""
        self.callee_tag = ""
        """To tag of the first response that carried one."""
        self.caller_signal: Endpoint | None = None
        """Where the initial INVITE came from."""
        self.callee_signal: Endpoint | None = None
        """Where the initial INVITE went to."""
        self.state = 0
        """Dialog state (correlate.dialog constants)."""
        self.start_ns = start_ns
        """Capture time of the initial INVITE."""
        self.answer_ns = 0
        """Capture time of the first 2xx to the INVITE, 0 when unanswered."""
        self.end_ns = 0
        """Capture time the call ended (BYE, CANCEL, failure, last activity)."""
        self.last_ns = start_ns
        """Capture time of the last SIP or media packet of the call."""
        self.status = "setup"
        """setup, ringing, answered, failed, cancelled, completed, timeout, incomplete."""
        self.final_code = 0
        """Final response code to the initial INVITE, 0 when none was seen."""
        self.final_reason = ""
        """Reason phrase of that final response."""
        self.end_reason = ""
        """bye, cancel, failure, rtp-timeout, end-of-input."""
        self.hangup_by = ""
        """Side that sent the BYE or CANCEL: caller or callee."""
        self.offers: tuple[list[MediaOffer], list[MediaOffer]] = ([], [])
        """Audio media each side announced, per side, newest last."""
        self.user_agent = ""
        """User-Agent of the initial INVITE."""
        self.ended_ns = 0
        """Capture time the dialog reached its terminal state (0 while live)."""
        self.illegal_transitions = 0
        """SIP messages that did not fit the dialog state machine."""
        self.sip_messages = 0
        """SIP messages seen for the call."""
        self.sip_log: list[bytes] = []
        """The call's SIP messages as seen, retransmissions included (the first
        MAX_SIP_LOG), each in ``pack_sip``'s form: read them with ``sip_entries``."""
        self.invite_cseq = 0
        """CSeq of the latest initial INVITE (an authentication retry raises it)."""
        self.flows: list[Flow] = []
        """Media flows seen for the call, in order of first packet; spool records index it."""
        self.flow_ids: dict[tuple[Endpoint, Endpoint], int] = {}
        """(source, destination) to index in ``flows``."""
        self.headers: dict[str, list[str]] = {}
        """Values of the INVITE headers the recording policy asked for (lower-case names)."""
        self.pauses: list[list[int]] = []
        """[start, end] capture times the recording was paused; end 0 while it still is."""
        self.pause_digits = ""
        """The latest DTMF digits, to spot a pause or resume sequence."""
        self.event_ts = -1
        """RTP timestamp of the last RFC 4733 event counted as a digit."""
        self.decision: Any = None
        """The recording policy's decision (correlate.policy.Decision), None before it."""
        self.source = ""
        """Where the INVITE was captured: the interface, or the capture file's name."""
        self.vlan = -1
        """The INVITE's outermost 802.1Q VLAN id, -1 without one."""
        self.remote = ""
        """For media recorded here of a call whose signalling another capture process or
        probe sees: that one's name ("" for a call whose signalling is seen here)."""

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1][1] == 0

    def seen_before(self, method: str, status: int, cseq: int) -> bool:
        """Remember a message; True when the same one came before (a retransmission)."""
        key = (method, status, cseq)
        if key in self._seen:
            return True
        self._seen.append(key)
        del self._seen[:-MAX_SEEN_MESSAGES]
        return False

    def codec_map(self, sender: int) -> dict[int, tuple[str, int, int]]:
        """Payload type map for media sent by ``sender``.

        RFC 3264 section 5.1: payload type numbers are those the receiver announced,
        so the receiver's map wins over the sender's own.
        """
        merged: dict[int, tuple[str, int, int]] = {}
        for side in (sender, 1 - sender):
            for offer in self.offers[side]:
                merged.update(offer.rtpmap)
        return merged

    def fmtp_map(self, sender: int) -> dict[int, str]:
        """a=fmtp parameters per payload type for media sent by ``sender`` (receiver's win)."""
        merged: dict[int, str] = {}
        for side in (sender, 1 - sender):
            for offer in self.offers[side]:
                merged.update(offer.fmtp)
        return merged
