"""Relayed variants of a generated capture: the calls as a mirror port at a SIP proxy with
a media relay sees them (both hops of every message and every stream), for tests and for
trying a setup:

    calltap generate OUT.pcap --mirror relay | relay-rewrite | relay-loss

The proxy and relay are one host (RELAY). The caller's hop is caller <-> RELAY, the callee's
hop RELAY <-> callee; SDP on each hop names the relay's port facing that hop.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Callable, Iterator

from capture.decode import decode
from capture.pcapwrite import udp_frame
from correlate.sip import looks_like_sip
from writer.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

Frame = tuple[int, bytes]
RELAY = bytes([203, 0, 113, 1])
RELAY_TEXT = "203.0.113.1"
CALLEE_NET = bytes([198, 51, 100])
# The relay's own delay on the packets it forwards, and the proxy's on SIP.
RELAY_NS = 400_000
PROXY_NS = 1_000_000
# relay-loss: the share of the relay's output on the callee's hop that never arrives.
HOP_LOSS = 0.05


def _ports(i: int) -> tuple[int, int]:
    """The relay's ports for call ``i``: facing the caller, facing the callee."""
    return 40000 + 4 * i, 40002 + 4 * i


def _index(media_port: int) -> int:
    """A generated call's index from either party's media port (16000 + 2i, 26000 + 2i)."""
    return (media_port - (26000 if media_port >= 26000 else 16000)) // 2


_SDP_PORT = re.compile(rb"m=audio (\d+)")


def _rewrite_sdp(sip: bytes, port: int) -> bytes:
    """The message with its SDP naming the relay at ``port``, Content-Length fixed."""
    head, sep, body = sip.partition(b"\r\n\r\n")
    if not body:
        return sip
    body = re.sub(rb"c=IN IP4 [0-9.]+", b"c=IN IP4 " + RELAY_TEXT.encode(), body)
    body = re.sub(rb"(o=\S+ \d+ \d+ IN IP4 )[0-9.]+", rb"\g<1>" + RELAY_TEXT.encode(), body)
    body = _SDP_PORT.sub(b"m=audio %d" % port, body)
    head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head)
    return head + sep + body


def _add_via(sip: bytes, i: int) -> bytes:
    line, _, rest = sip.partition(b"\r\n")
    via = f"Via: SIP/2.0/UDP {RELAY_TEXT}:5060;branch=z9hG4bKrelay{i}".encode()
    return line + b"\r\n" + via + b"\r\n" + rest


def _strip_via(sip: bytes) -> bytes:
    return re.sub(rb"Via: SIP/2.0/UDP 203\.0\.113\.1:5060;branch=[^\r]*\r\n", b"", sip, count=1)


class _Rewriter:
    """What a relay that renumbers streams does to the packets it sends: its own SSRC,
    sequence and timestamp bases per stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.streams: dict[bytes, tuple[bytes, int, int]] = {}

    def __call__(self, rtp: bytes) -> bytes:
        if len(rtp) < 12 or rtp[1] & 0x7F in range(72, 77):
            return rtp
        ssrc = rtp[8:12]
        new = self.streams.get(ssrc)
        if new is None:
            new = self.streams[ssrc] = (struct.pack("!I", self.rng.getrandbits(32)),
                                        self.rng.randrange(65536), self.rng.getrandbits(32))
        seq = (struct.unpack_from("!H", rtp, 2)[0] + new[1]) & 0xFFFF
        ts = (struct.unpack_from("!I", rtp, 4)[0] + new[2]) & 0xFFFFFFFF
        return rtp[:2] + struct.pack("!HI", seq, ts) + new[0] + rtp[12:]


def _packets(frames: list[Frame]
             ) -> Iterator[tuple[int, bytes, bytes, int, int, bytes, bool]]:
    """A generated capture's packets: time, addresses, ports, payload, and whether the
    caller's side sent it."""
    for t, f in frames:
        r = decode(1, f)
        assert not isinstance(r, int)
        _proto, src, dst, sport, dport, payload = r
        yield t, src, dst, sport, dport, payload, dst[:3] == CALLEE_NET


def relayed(frames: list[Frame], rewrite: bool = False, loss: float = 0.0,
            seed: int = 1) -> list[Frame]:
    """Both hops of every packet. ``rewrite``: the relay renumbers what it sends and adds
    5-40 ms of jitter; ``loss``: that share of its output towards the callee is lost."""
    rng = random.Random(seed)
    rewriter = _Rewriter(rng)
    out: list[Frame] = []
    for t, src, dst, sport, dport, payload, from_caller in _packets(frames):
        if looks_like_sip(payload):
            m = _SDP_PORT.search(payload)
            i = _index(int(m.group(1))) if m else 0
            to_caller, to_callee = _ports(i)
            if from_caller:  # caller -> proxy, then proxy -> callee with the relay's SDP
                out.append((t, udp_frame(src, sport, RELAY, 5060, payload)))
                fwd = _rewrite_sdp(payload, to_callee) if m else payload
                if payload[:4] != b"SIP/":
                    fwd = _add_via(fwd, i)
                out.append((t + PROXY_NS, udp_frame(RELAY, 5060, dst, dport, fwd)))
            else:
                if payload[:4] != b"SIP/":  # a request from the callee: the proxy's Via
                    payload = _add_via(payload, i)
                out.append((t, udp_frame(src, sport, RELAY, 5060, payload)))
                fwd = _strip_via(_rewrite_sdp(payload, to_caller) if m else payload)
                out.append((t + PROXY_NS, udp_frame(RELAY, 5060, dst, dport, fwd)))
            continue
        i = _index(sport if from_caller else dport)
        to_caller, to_callee = _ports(i)
        odd = sport % 2  # RTCP on the port above
        relay_in = (to_caller if from_caller else to_callee) + odd
        relay_out = (to_callee if from_caller else to_caller) + odd
        out.append((t, udp_frame(src, sport, RELAY, relay_in, payload)))
        delay = RELAY_NS + (rng.randrange(5_000_000, 40_000_000) if rewrite else 0)
        if from_caller and loss and rng.random() < loss:
            continue  # lost between the relay and the callee: seen on one hop only
        fwd = rewriter(payload) if rewrite and not odd else payload
        out.append((t + delay, udp_frame(RELAY, relay_out, dst, dport, fwd)))
    out.sort(key=lambda x: x[0])
    return out


RELAY_VARIANTS: dict[str, Callable[[list[Frame]], list[Frame]]] = {
    "relay": relayed,
    "relay-rewrite": lambda frames: relayed(frames, rewrite=True),
    "relay-loss": lambda frames: relayed(frames, loss=HOP_LOSS),
}


SBC = bytes([203, 0, 113, 2])
SBC_TEXT = "203.0.113.2"
JOIN_HEADER = "X-CID"
"""The header the b2bua-header variant carries the A-leg's Call-ID in (as several SBCs do)."""
_CALL_ID = re.compile(rb"Call-ID: ([^\r]+)")
_TAG = re.compile(rb";tag=([A-Za-z0-9]+)")


def _b_leg_sip(sip: bytes, i: int, join: str, transcode: bool) -> bytes:
    """The SBC's own dialog towards the callee: another Call-ID, other tags and branch, its
    SDP, and how it says which A-leg it belongs to."""
    cid = _CALL_ID.search(sip)
    a_cid = cid.group(1) if cid else b""
    out = _CALL_ID.sub(b"Call-ID: b2b-" + a_cid, sip)
    out = _TAG.sub(lambda m: b";tag=s" + m.group(1), out)
    out = re.sub(rb"branch=z9hG4bK", b"branch=z9hG4bKsbc", out)
    if transcode:
        out = out.replace(b"RTP/AVP 0 101", b"RTP/AVP 8 101").replace(
            b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:8 PCMA/8000")
    if out[:4] != b"SIP/" and out.startswith(b"INVITE") and join == "header":
        line, _, rest = out.partition(b"\r\n")
        out = line + b"\r\n" + f"{JOIN_HEADER}: ".encode() + a_cid + b"\r\n" + rest
    head, sep, body = out.partition(b"\r\n\r\n")
    head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head)
    return head + sep + body


def _session_id(sip: bytes, i: int) -> bytes:
    """RFC 7989: the caller's UUID, passed unchanged through the B2BUA on both legs."""
    line, _, rest = sip.partition(b"\r\n")
    return line + b"\r\n" + f"Session-ID: {i + 1:032x}".encode() + b"\r\n" + rest


def _pcmu_to_pcma(rtp: bytes) -> bytes:
    if len(rtp) < 12 or rtp[1] & 0x7F != 0:
        return rtp
    return bytes([rtp[0], (rtp[1] & 0x80) | 8]) + rtp[2:12] + alaw_encode(
        ulaw_decode(rtp[12:]))


def b2bua(frames: list[Frame], join: str = "session-id", transcode: bool = False
          ) -> list[Frame]:
    """The calls through a B2BUA (an SBC at SBC): the A-leg caller <-> SBC keeps the
    dialog, the B-leg SBC <-> callee is a dialog of its own (Call-ID, tags, SSRCs), joined
    by RFC 7989 Session-ID (``join``="session-id"), by the A-leg's Call-ID in a header
    ("header") or by nothing ("none": only their audio tells); ``transcode``: the B-leg is
    PCMA where the A-leg is PCMU."""
    rng = random.Random(3)
    rewriter = _Rewriter(rng)
    out: list[Frame] = []
    for t, src, dst, sport, dport, payload, from_caller in _packets(frames):
        if looks_like_sip(payload):
            m = _SDP_PORT.search(payload)
            cid = _CALL_ID.search(payload)
            i = int(cid.group(1).split(b"-")[2].split(b"@")[0]) if cid else 0
            to_caller, to_callee = _ports(i)
            a_leg = _rewrite_sdp(payload, to_caller) if m and not from_caller else payload
            b_leg = _b_leg_sip(_rewrite_sdp(payload, to_callee) if m and from_caller
                               else payload, i, join, transcode)
            if join == "session-id":
                a_leg, b_leg = _session_id(a_leg, i), _session_id(b_leg, i)
            a_leg = a_leg.replace(RELAY_TEXT.encode(), SBC_TEXT.encode())
            b_leg = b_leg.replace(RELAY_TEXT.encode(), SBC_TEXT.encode())
            if from_caller:
                out.append((t, udp_frame(src, sport, SBC, 5060, a_leg)))
                out.append((t + PROXY_NS, udp_frame(SBC, 5060, dst, dport, b_leg)))
            else:
                out.append((t, udp_frame(src, sport, SBC, 5060, b_leg)))
                out.append((t + PROXY_NS, udp_frame(SBC, 5060, dst, dport, a_leg)))
            continue
        i = _index(sport if from_caller else dport)
        to_caller, to_callee = _ports(i)
        odd = sport % 2
        sbc_in = (to_caller if from_caller else to_callee) + odd
        sbc_out = (to_callee if from_caller else to_caller) + odd
        if transcode and not odd and not from_caller:
            payload = _pcmu_to_pcma(payload)  # the callee speaks PCMA on the B-leg
        out.append((t, udp_frame(src, sport, SBC, sbc_in, payload)))
        fwd = payload
        if not odd:
            if transcode:  # the SBC transcodes: PCMU on the A-leg, PCMA on the B-leg
                fwd = _pcmu_to_pcma(fwd) if from_caller else _pcma_to_pcmu(fwd)
            fwd = rewriter(fwd)  # its own SSRC, sequence and timestamp per leg
        out.append((t + RELAY_NS, udp_frame(SBC, sbc_out, dst, dport, fwd)))
    out.sort(key=lambda x: x[0])
    return out


def _pcma_to_pcmu(rtp: bytes) -> bytes:
    if len(rtp) < 12 or rtp[1] & 0x7F != 8:
        return rtp
    return bytes([rtp[0], rtp[1] & 0x80]) + rtp[2:12] + ulaw_encode(alaw_decode(rtp[12:]))


RELAY_VARIANTS.update({
    "b2bua": b2bua,
    "b2bua-header": lambda frames: b2bua(frames, join="header"),
    "b2bua-transcode": lambda frames: b2bua(frames, transcode=True),
    "b2bua-media": lambda frames: b2bua(frames, join="none", transcode=True),
})
