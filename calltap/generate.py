"""Synthetic capture generator: N SIP calls with G.711 RTP and known audio per direction.

Each direction carries a tone whose frequency identifies the call and the side, with a
loudness pattern in 100 ms blocks, so a test can tell which party a channel holds and
measure its alignment. Loss, reordering, duplicates and jitter are applied to RTP only.
Everything is derived from ``seed``: the same options give the same bytes.
"""

from __future__ import annotations

import heapq
import random
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from capture.pcapwrite import PcapWriter, udp_frame
from writer.g711 import alaw_encode, ulaw_encode

NS = 1_000_000_000
RATE = 8000
PTIME_NS = 20_000_000
SAMPLES = 160
T0_NS = 1_768_471_200 * NS  # 2026-01-15T10:00:00Z
PT = {"PCMU": 0, "PCMA": 8}
BLOCK = 800  # 100 ms loudness blocks


@dataclass
class GenOptions:
    calls: int = 4
    duration: float = 10.0
    concurrent: bool = True
    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 1
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    stagger: float = 0.25
    """Seconds between call starts when concurrent."""
    drift: float = 0.0
    """How much faster the caller's RTP clock runs than the capture clock (0.0005 = 0.05%)."""
    mirror: str = ""
    """A calltap.mirror variant applied to every frame (tunnel, TCP, fragments, HEP...)."""
    capture_loss: float = 0.0
    """Fraction of RTP the mirror misses: delivered to the far end, absent from the capture
    (``loss`` is lost in the network: neither the far end nor the capture sees it)."""
    rtcp: bool = False
    """Each party sends RTCP receiver reports every 5 s (RFC 3550), reporting what it lost."""
    missing_side: int = -1
    """0 or 1: that party's RTP never reaches the capture (asymmetric mirroring)."""
    varied: bool = False
    """Parties, identities (P-Asserted-Identity, Diversion), an X-Queue header, caller
    networks and (with ``concurrent`` off) start times spread over the day differ from call
    to call, as ``varied_party`` lists them: material for recording-policy tests."""
    pause_at: float = -1.0
    """Seconds into the media when the caller pauses the recording (with ``resume_at``)."""
    resume_at: float = -1.0
    pause_by: str = "header"
    """How: header (SIP INFO with X-Record: pause / resume), info (an INFO body of type
    application/x-record-control) or dtmf (RFC 4733 *7 and *8 from the caller). Between the
    two, both parties send seeded noise instead of their tones: audio that must not be kept."""
    hold_at: float = -1.0
    """Seconds into the media when the caller puts the callee on hold (a re-INVITE with
    a=sendonly, answered a=recvonly): the callee sends nothing until ``unhold_at``."""
    unhold_at: float = -1.0


# Caller and callee patterns of varied calls; index i takes entry i % len.
VARIED_CALLERS = ("+442079460{i:03}", "+1212555{i:04}", "2{i:03}", "+33140{i:05}",
                  "+442079461{i:03}", "anonymous")
VARIED_CALLEES = ("+442079462000", "+18005550{i:03}", "3{i:03}", "+442079461000",
                  "+4930{i:05}", "+442079463{i:03}", "+18005551000")
VARIED_QUEUES = ("sales", "support", "", "billing", "")


def varied_party(i: int) -> dict[str, str]:
    """The parties and headers of varied call ``i`` (GenOptions.varied)."""
    caller = VARIED_CALLERS[i % len(VARIED_CALLERS)].format(i=i)
    callee = VARIED_CALLEES[i % len(VARIED_CALLEES)].format(i=i)
    out = {"caller": caller, "callee": callee, "queue": VARIED_QUEUES[i % len(VARIED_QUEUES)],
           "net": "10.1.0" if i % 4 == 0 else "192.0.2"}
    if caller == "anonymous" or i % 3 == 0:
        # the network asserts who is really calling (RFC 3325)
        out["pai"] = f"+44207946{5000 + i}" if caller == "anonymous" else caller
    if i % 7 == 0:
        out["diversion"] = "+442079461000"  # forwarded from the HR line
    return out


@dataclass
class GenCall:
    index: int
    call_id: str
    codec: str
    start_ns: int
    media_start_ns: tuple[int, int]
    freqs: tuple[float, float]
    ssrcs: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)


def frequency(index: int, side: int) -> float:
    """The tone of one party: distinct for every call and side, inside the telephone band."""
    return 300.0 + 37.0 * (2 * index + side)


def amplitude(index: int, side: int, block: int) -> float:
    """Loudness of a 100 ms block: loud, with a quiet block in every five at a party offset."""
    return 0.05 if (block + 3 * index + 2 * side) % 5 == 0 else 0.5


def tone(index: int, side: int, start: int, n: int) -> npt.NDArray[np.int16]:
    """Samples ``start .. start+n`` of a party's audio (sample 0 = its first RTP packet)."""
    t = np.arange(start, start + n)
    amp = np.where((t // BLOCK + 3 * index + 2 * side) % 5 == 0, 0.05, 0.5)
    sig = amp * np.sin(2 * np.pi * frequency(index, side) * t / RATE)
    return np.round(sig * 32767).astype(np.int16)


def _sdp(ip: str, port: int, codec: str, sess: int, direction: str = "sendrecv",
         version: int = 0) -> bytes:
    pt = PT[codec]
    return (
        f"v=0\r\no=- {sess} {sess + version} IN IP4 {ip}\r\ns=calltap\r\nc=IN IP4 {ip}\r\n"
        f"t=0 0\r\nm=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {codec}/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
        f"a={direction}\r\n"
    ).encode()


def _sip(start: str, hdrs: list[str], body: bytes = b"") -> bytes:
    lines = [start, *hdrs]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _ip(prefix: str, index: int) -> tuple[str, bytes]:
    text = f"{prefix}.{10 + index % 240}"
    return text, bytes(int(x) for x in text.split("."))


def _call_packets(
    gc: GenCall, opts: GenOptions, rng: random.Random
) -> Iterator[tuple[int, bytes]]:
    """Every packet of one call, in capture-time order."""
    i = gc.index
    party = varied_party(i) if opts.varied else {}
    a_txt, a_ip = _ip(party.get("net", "192.0.2"), i)
    b_txt, b_ip = _ip("198.51.100", i)
    a_port, b_port = 16000 + 2 * i, 26000 + 2 * i
    a_sip, b_sip = 5060, 5060 + 1 + i % 8
    tag_a, tag_b = f"a{i}x{opts.seed}", f"b{i}y{opts.seed}"
    caller_user = party.get("caller", f"caller{i}")
    frm = f'"Caller {i}" <sip:{caller_user}@example.com>;tag={tag_a}'
    to = f"<sip:{party.get('callee', f'callee{i}')}@example.net>"
    to_t = f"{to};tag={tag_b}"
    base = [f"Call-ID: {gc.call_id}", "Max-Forwards: 70"]
    via = f"Via: SIP/2.0/UDP {a_txt}:{a_sip};branch=z9hG4bK{i}c{opts.seed}"
    uri = f"sip:callee{i}@{b_txt}:{b_sip}"
    t = gc.start_ns
    out: list[tuple[int, bytes]] = []

    def sig(ts: int, fwd: bool, payload: bytes) -> None:
        if fwd:
            out.append((ts, udp_frame(a_ip, a_sip, b_ip, b_sip, payload)))
        else:
            out.append((ts, udp_frame(b_ip, b_sip, a_ip, a_sip, payload)))

    invite_hdrs = [via, f"From: {frm}", f"To: {to}", *base, "CSeq: 1 INVITE",
                   f"Contact: <sip:caller{i}@{a_txt}:{a_sip}>", "User-Agent: calltap-generator"]
    if "pai" in party:
        invite_hdrs.append(f'P-Asserted-Identity: "Agent {i}" <sip:{party["pai"]}@pbx.example>')
    if "diversion" in party:
        invite_hdrs.append(f"Diversion: <sip:{party['diversion']}@pbx.example>"
                           ";reason=unconditional;counter=1")
    if party.get("queue"):
        invite_hdrs.append(f"X-Queue: {party['queue']}")
    sig(t, True, _sip(f"INVITE {uri} SIP/2.0", invite_hdrs, _sdp(a_txt, a_port, gc.codec, i)))
    resp = [via, f"From: {frm}", f"To: {to_t}", *base, "CSeq: 1 INVITE"]
    sig(t + 5_000_000, False, _sip("SIP/2.0 100 Trying", [via, f"From: {frm}", f"To: {to}",
                                                          *base, "CSeq: 1 INVITE"]))
    sig(t + 50_000_000, False, _sip("SIP/2.0 180 Ringing", resp))
    ans = gc.media_start_ns[0] - 10_000_000
    sig(ans, False, _sip("SIP/2.0 200 OK", [*resp, f"Contact: <sip:callee{i}@{b_txt}:{b_sip}>"],
                         _sdp(b_txt, b_port, gc.codec, 1000 + i)))
    sig(ans + 2_000_000, True, _sip(f"ACK {uri} SIP/2.0",
                                    [via, f"From: {frm}", f"To: {to_t}", *base, "CSeq: 1 ACK"]))
    n_pkts = int(opts.duration * RATE) // SAMPLES
    jitter = int(opts.jitter_ms * 1_000_000)
    encode = ulaw_encode if gc.codec == "PCMU" else alaw_encode
    pt = PT[gc.codec]
    # the pause window in packets of the caller's stream, and its triggers
    p0 = round(opts.pause_at * 1000 / 20) if opts.pause_at >= 0 else n_pkts
    p1 = round(opts.resume_at * 1000 / 20) if opts.resume_at >= 0 else n_pkts
    events: dict[int, tuple[int, int, int]] = {}
    if opts.pause_at >= 0:
        cseq = 3
        for at, word in ((p0, "pause"), (p1, "resume")):
            ts = gc.media_start_ns[0] + at * PTIME_NS - 1_000_000
            if opts.pause_by == "dtmf":
                # RFC 4733: "*7" just before the pause, "*8" just after it; 5 packets
                # (100 ms) per digit
                for j, digit in enumerate((10, 7 if word == "pause" else 8)):
                    first = (at - 12 if word == "pause" else at) + 6 * j
                    for m in range(5):
                        events[first + m] = (digit, first, m)
                continue
            hdrs = [via, f"From: {frm}", f"To: {to_t}", *base, f"CSeq: {cseq} INFO"]
            if opts.pause_by == "header":
                hdrs.append(f"X-Record: {word}")
                info = _sip(f"INFO {uri} SIP/2.0", hdrs)
            else:
                body = word.encode()
                info = ("\r\n".join([f"INFO {uri} SIP/2.0", *hdrs,
                                      "Content-Type: application/x-record-control",
                                      f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body
            sig(ts, True, info)
            sig(ts + 3_000_000, False, _sip("SIP/2.0 200 OK", [h for h in hdrs
                                                               if not h.startswith("X-")]))
            cseq += 1
    # hold: the callee's packets in [h0, h1) are not sent; re-INVITEs from the caller
    h0 = round(opts.hold_at * 1000 / 20) if opts.hold_at >= 0 else n_pkts
    h1 = round(opts.unhold_at * 1000 / 20) if opts.unhold_at >= 0 else n_pkts
    if opts.hold_at >= 0:
        for n, (at, mine, theirs) in enumerate(((h0, "sendonly", "recvonly"),
                                                (h1, "sendrecv", "sendrecv"))):
            if at >= n_pkts:
                continue
            ts = gc.media_start_ns[0] + at * PTIME_NS - 2_000_000
            hdrs = [via.replace(f"c{opts.seed}", f"c{opts.seed}h{n}"), f"From: {frm}",
                    f"To: {to_t}", *base, f"CSeq: {10 + n} INVITE",
                    f"Contact: <sip:caller{i}@{a_txt}:{a_sip}>"]
            sig(ts, True, _sip(f"INVITE {uri} SIP/2.0", hdrs,
                               _sdp(a_txt, a_port, gc.codec, i, mine, n + 1)))
            sig(ts + 1_000_000, False, _sip("SIP/2.0 200 OK", [*hdrs[:4], hdrs[5]],
                                            _sdp(b_txt, b_port, gc.codec, 1000 + i, theirs,
                                                 n + 1)))
            sig(ts + 1_500_000, True, _sip(f"ACK {uri} SIP/2.0", [
                *hdrs[:4], f"CSeq: {10 + n} ACK"]))
    secret = np.random.default_rng(opts.seed * 7919 + i)
    last = 0
    for side in (0, 1):
        seq0 = rng.randrange(65536)
        ts0 = rng.randrange(1 << 32)
        net_lost = 0
        for k in range(n_pkts):
            if opts.rtcp and k and k % 250 == 0:
                # the receiver's RR about this stream: what the network lost so far
                rr = _receiver_report(gc.ssrcs[1 - side], gc.ssrcs[side], net_lost,
                                      seq0 + k - 1, k, f"{SIDES[1 - side]}{i}@calltap.test")
                t_rr = gc.media_start_ns[side] + k * PTIME_NS + 5_000_000
                if side == 0:  # the callee reports on the caller's stream
                    out.append((t_rr, udp_frame(b_ip, b_port + 1, a_ip, a_port + 1, rr)))
                else:
                    out.append((t_rr, udp_frame(a_ip, a_port + 1, b_ip, b_port + 1, rr)))
            if rng.random() < opts.loss:
                net_lost += 1
                continue
            if side == opts.missing_side or rng.random() < opts.capture_loss:
                continue
            if side == 1 and h0 <= k < h1:
                continue  # on hold: the callee is not to send
            step = PTIME_NS / (1 + opts.drift) if side == 0 else PTIME_NS
            nominal = gc.media_start_ns[side] + round(k * step)
            delay = rng.randrange(jitter + 1) if jitter else 0
            if rng.random() < opts.reorder:
                delay += 30_000_000  # arrives after the next packet
            ev = events.get(k) if side == 0 else None
            stamp = ts0 + (ev[1] if ev else k) * SAMPLES
            hdr = bytes([0x80, (101 if ev else pt) | (0x80 if k == 0 or (ev and not ev[2])
                                                      else 0)])
            hdr += ((seq0 + k) & 0xFFFF).to_bytes(2, "big")
            hdr += (stamp & 0xFFFFFFFF).to_bytes(4, "big")
            hdr += gc.ssrcs[side].to_bytes(4, "big")
            if ev:
                end = 0x80 if ev[2] == 4 else 0  # E bit on the last packet, volume 10
                duration = (SAMPLES * (ev[2] + 1)).to_bytes(2, "big")
                payload = hdr + bytes([ev[0], end | 10]) + duration
            elif p0 <= k < p1:
                # what the pause must keep out of every file: seeded noise, unlike any tone
                noise = secret.normal(0, 6000, SAMPLES).clip(-32768, 32767).astype(np.int16)
                payload = hdr + encode(noise)
            else:
                payload = hdr + encode(tone(i, side, k * SAMPLES, SAMPLES))
            ts = nominal + delay
            if side == 0:
                frame = udp_frame(a_ip, a_port, b_ip, b_port, payload)
            else:
                frame = udp_frame(b_ip, b_port, a_ip, a_port, payload)
            out.append((ts, frame))
            if rng.random() < opts.duplicate:
                out.append((ts + 1_000_000, frame))
            last = max(last, ts)
    bye_from_caller = i % 2 == 0
    bye_t = last + 40_000_000
    if bye_from_caller:
        bye = [via, f"From: {frm}", f"To: {to_t}", *base, "CSeq: 2 BYE"]
        sig(bye_t, True, _sip(f"BYE {uri} SIP/2.0", bye))
        sig(bye_t + 3_000_000, False, _sip("SIP/2.0 200 OK", bye))
    else:
        bvia = f"Via: SIP/2.0/UDP {b_txt}:{b_sip};branch=z9hG4bKb{i}"
        bye = [bvia, f"From: {to_t}", f"To: {frm}", *base, "CSeq: 1 BYE"]
        sig(bye_t, False, _sip(f"BYE sip:caller{i}@{a_txt}:{a_sip} SIP/2.0", bye))
        sig(bye_t + 3_000_000, True, _sip("SIP/2.0 200 OK", bye))
    out.sort(key=lambda x: x[0])
    yield from out


SIDES = ("caller", "callee")


def _receiver_report(reporter: int, about: int, lost: int, highest: int, expected: int,
                     cname: str) -> bytes:
    """A compound RTCP packet: an RR (RFC 3550 section 6.4.2) with one report block, the
    reporter's SDES CNAME, and an XR VoIP metrics block (RFC 3611 section 4.7) with the same
    loss as a rate."""
    block = about.to_bytes(4, "big") + (lost & 0xFFFFFF).to_bytes(4, "big")
    block += (highest & 0xFFFFFFFF).to_bytes(4, "big") + bytes(12)
    rr = bytes([0x81, 201]) + (7).to_bytes(2, "big") + reporter.to_bytes(4, "big") + block
    item = bytes([1, len(cname)]) + cname.encode()
    chunk = reporter.to_bytes(4, "big") + item + bytes(4 - len(item) % 4)
    sdes = bytes([0x81, 202]) + (len(chunk) // 4).to_bytes(2, "big") + chunk
    rate = min(255, lost * 256 // max(1, expected))
    # loss, discard, burst/gap density, burst/gap ms, RTT, end-system delay, signal, noise,
    # RERL, Gmin, R, external R, MOS-LQ, MOS-CQ, RX config (adaptive), reserved, JB nominal,
    # max, absolute max
    metrics = struct.pack("!IBBBBHHHHbbBBBBBBBxHHH", about, rate, 0, 0, 0, 0, 0, 0, 0, -20,
                          -70, 127, 16, 127, 127, 42, 43, 0x30, 40, 80, 200)
    xr = bytes([0x80, 207]) + (10).to_bytes(2, "big") + reporter.to_bytes(4, "big")
    xr += bytes([7, 0]) + (8).to_bytes(2, "big") + metrics
    return rr + sdes + xr


def plan(opts: GenOptions) -> list[GenCall]:
    """The calls a generation run will contain (deterministic from the options)."""
    if opts.calls < 0 or opts.duration <= 0 or opts.stagger < 0:
        raise ValueError("calls must be >= 0, duration > 0 and stagger >= 0")
    rng = random.Random(opts.seed)
    calls: list[GenCall] = []
    start = T0_NS
    for i in range(opts.calls):
        codec = opts.codecs[i % len(opts.codecs)].upper()
        if codec not in PT:
            raise ValueError(f"unsupported codec {codec}; the generator writes PCMU or PCMA")
        media0 = start + 400_000_000
        media1 = media0 + 37_000_000 + (i % 7) * 3_000_000
        calls.append(
            GenCall(i, f"gen-{opts.seed}-{i}@calltap.test", codec, start, (media0, media1),
                    (frequency(i, 0), frequency(i, 1)),
                    (rng.randrange(1 << 32), rng.randrange(1 << 32)))
        )
        if opts.concurrent:
            start += int(opts.stagger * NS)
        elif opts.varied:
            start += 16 * 60 * NS + 7 * NS  # spread over the day: 10:00, 10:16, ...
        else:
            start = media1 + int(opts.duration * NS) + NS
    return calls


def generate(path: str, opts: GenOptions) -> int:
    """Write the capture to ``path``; returns the number of packets written."""
    calls = plan(opts)
    streams = [
        _call_packets(gc, opts, random.Random(opts.seed * 100_003 + gc.index)) for gc in calls
    ]
    merged: Iterable[tuple[int, bytes]] = heapq.merge(*streams, key=lambda x: x[0])
    if opts.mirror:
        from calltap.mirror import VARIANTS

        if opts.mirror not in VARIANTS:
            raise ValueError(f"unknown mirror variant {opts.mirror!r}; one of "
                             f"{', '.join(sorted(VARIANTS))}")
        merged = VARIANTS[opts.mirror](list(merged))
    with open(path, "wb") as f:
        w = PcapWriter(f)
        for ts, frame in merged:
            w.write(ts, frame)
        return w.count


def write_rtp_pcap(path: str, pcm: npt.NDArray[np.int16], codec: str = "PCMU",
                   ssrc: int = 0x1234ABCD, seed: int = 1) -> int:
    """Write ``pcm`` (8 kHz mono) as a plain RTP stream (20 ms packets) for SIPp to replay."""
    rng = random.Random(seed)
    encode = ulaw_encode if codec == "PCMU" else alaw_encode
    seq0, ts0 = rng.randrange(65536), rng.randrange(1 << 32)
    src, dst = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
    n = len(pcm) // SAMPLES
    with open(path, "wb") as f:
        w = PcapWriter(f)
        for k in range(n):
            hdr = bytes([0x80, PT[codec] | (0x80 if k == 0 else 0)])
            hdr += ((seq0 + k) & 0xFFFF).to_bytes(2, "big")
            hdr += ((ts0 + k * SAMPLES) & 0xFFFFFFFF).to_bytes(4, "big")
            hdr += ssrc.to_bytes(4, "big")
            payload = hdr + encode(pcm[k * SAMPLES : (k + 1) * SAMPLES])
            w.write(T0_NS + k * PTIME_NS, udp_frame(src, 6000, dst, 6002, payload))
        return w.count


def codec_call(path: str, codec: str, clock: int, pt: int, payloads: list[bytes],
               ts_steps: list[int], fmtp: str = "", channels: int = 1) -> int:
    """One SIP call whose caller sends ``payloads`` as RTP of ``codec``, RTP timestamps
    advancing by ``ts_steps`` and capture time with them; the callee sends nothing."""
    a_txt, a_ip = _ip("192.0.2", 0)
    b_txt, b_ip = _ip("198.51.100", 0)
    rtpmap = f"{codec}/{clock}" + (f"/{channels}" if channels > 1 else "")
    media = (f"m=audio {{port}} RTP/AVP {pt}\r\na=rtpmap:{pt} {rtpmap}\r\n"
             + (f"a=fmtp:{pt} {fmtp}\r\n" if fmtp else ""))

    def sdp(ip: str, port: int) -> bytes:
        return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
                + media.format(port=port)).encode()

    frm, to = "<sip:caller@example.com>;tag=c1", "<sip:callee@example.net>"
    base = ["Call-ID: codec-" + codec.lower() + "@calltap.test", f"From: {frm}",
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc"]
    t = T0_NS
    out: list[tuple[int, bytes]] = []
    out.append((t, udp_frame(a_ip, 5060, b_ip, 5060, _sip(
        "INVITE sip:callee@example.net SIP/2.0", [*base, f"To: {to}", "CSeq: 1 INVITE"],
        sdp(a_txt, 16000)))))
    out.append((t + 10**8, udp_frame(b_ip, 5060, a_ip, 5060, _sip(
        "SIP/2.0 200 OK", [*base, f"To: {to};tag=e1", "CSeq: 1 INVITE"], sdp(b_txt, 26000)))))
    out.append((t + 2 * 10**8, udp_frame(a_ip, 5060, b_ip, 5060, _sip(
        "ACK sip:callee@example.net SIP/2.0", [*base, f"To: {to};tag=e1", "CSeq: 1 ACK"]))))
    elapsed = 0  # RTP clock ticks since the first packet: capture time follows it
    for k, payload in enumerate(payloads):
        ts = (1000 + elapsed) & 0xFFFFFFFF
        hdr = bytes([0x80, pt]) + (k & 0xFFFF).to_bytes(2, "big") + ts.to_bytes(4, "big")
        hdr += (0x5EED).to_bytes(4, "big")
        out.append((t + NS // 2 + elapsed * NS // clock,
                    udp_frame(a_ip, 16000, b_ip, 26000, hdr + payload)))
        elapsed += ts_steps[k]
    end = t + NS + elapsed * NS // clock
    out.append((end, udp_frame(a_ip, 5060, b_ip, 5060, _sip(
        "BYE sip:callee@example.net SIP/2.0", [*base, f"To: {to};tag=e1", "CSeq: 2 BYE"]))))
    with open(path, "wb") as f:
        w = PcapWriter(f)
        for ts_ns, frame in out:
            w.write(ts_ns, frame)
        return w.count


ENVELOPE_FRAME = 40  # 5 ms


def _envelope(x: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    n = len(x) // ENVELOPE_FRAME * ENVELOPE_FRAME
    frames = x[:n].astype(np.float64).reshape(-1, ENVELOPE_FRAME)
    env: npt.NDArray[np.float64] = np.sqrt((frames**2).mean(axis=1))
    centred: npt.NDArray[np.float64] = env - env.mean()
    return centred


def alignment_error(channel: npt.NDArray[np.int16], index: int, side: int, at: int,
                    expected: int, length: int = 2 * RATE, search: int = 1600) -> int:
    """Where a party's audio from its sample ``at`` sits in a recorded channel, minus where it
    should (``expected``), in samples. Found by the 100 ms loudness pattern, which survives
    a drifting sender's stretched waveform; 5 ms resolution."""
    ref = tone(index, side, at, length)
    lo = max(0, expected - search)
    seg = _envelope(channel[lo : expected + length + search])
    corr = np.correlate(seg, _envelope(ref), mode="valid")
    return int(np.argmax(corr)) * ENVELOPE_FRAME + lo - expected
