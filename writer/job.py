"""Write one finished call: spool in, audio + RFC 7865 metadata + summary JSON + index line out.

Two passes over the call's spool: the first finds each segment's clock mapping (smallest
transit), the second decodes and places audio. Memory is the window plus per-SSRC
counters, whatever the call's length.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from capture.decode import format_ip
from capture.spool import read_spool
from correlate.call import SIDE_NAMES, Call
from writer.audio_out import AudioOut
from writer.codecs import CONTROL, EMPTY, DecodeError, Decoder, decoder_for, resolve
from writer.dtmf import TelephoneEvents
from writer.errors import RtpError
from writer.flows import assign_channels
from writer.metadata import build_metadata
from writer.mos import mos, r_factor
from writer.options import WriteOptions
from writer.output import append_index, call_stem, write_atomic
from writer.resample import Resampler
from writer.rtcp import SR, parse_rtcp
from writer.rtp import parse_rtp
from writer.srtp import SUITES, Decryptor, SrtpKey, SrtpKeyError, parse_crypto
from writer.stats import StreamStats
from writer.timefmt import rfc3339
from writer.timeline import (
    MAX_GAP_SECONDS,
    Segment,
    Segmenter,
    StereoWindow,
    collapse_gaps,
)

VERSION = "0.1.0"
# Fixed jitter buffer assumed for listening quality: a common endpoint default.
JITTER_BUFFER_MS = 60.0
DEFAULTS = WriteOptions()
# Comfort noise fills at most this much of one silence (it must stay inside the window).
MAX_CN_SECONDS = 4
ANY_PT = frozenset(range(128)) - frozenset(range(72, 77))
# Payloads sampled per direction of an unsignalled call to tell SRTP from plain RTP.
SNIFF_PACKETS = 64
SNIFF_MIN_BYTES = 4096
# Bits per byte above which a payload is taken for ciphertext: uniform bytes give 7.95+
# over 4 KiB; G.711 speech and noise stay below 7.6.
ENCRYPTED_ENTROPY = 7.85
# SSRCs tracked per direction; a sender changes SSRC a few times at most, hostile streams more.
MAX_SSRCS = 64
NS = 1_000_000_000


def _losing_branches(call: Call) -> frozenset[tuple[bytes, int]]:
    """Media endpoints only forked branches that did not answer announced."""
    offers = call.offers[1]
    winner = {(o.addr, o.port) for o in offers if not o.tag or o.tag == call.callee_tag}
    losers = {(o.addr, o.port) for o in offers if o.tag and o.tag != call.callee_tag}
    return frozenset(losers - winner) if call.answer_ns else frozenset()


def _sdes_key(call: Call, sender: int) -> tuple[str, bytes] | None:
    """The SDES key ``sender`` encrypts with: its a=crypto line whose tag the other side's
    answer chose (RFC 4568 section 5.1.2), else its first usable one."""
    theirs = {c[0] for o in call.offers[1 - sender] for c in map(parse_crypto, o.crypto) if c}
    mine = [c for o in reversed(call.offers[sender]) for c in map(parse_crypto, o.crypto) if c]
    mine = [c for c in mine if c[1] in SUITES]
    for tag, suite, key in mine:
        if tag in theirs:
            return suite, key
    return (mine[0][1], mine[0][2]) if mine else None


class _Direction:
    """Working state of one direction (one channel) while the call is written."""

    def __init__(self, call: Call, channel: int, channels: list[int],
                 user_keys: Sequence[SrtpKey]) -> None:
        self.channel = channel
        self.rtpmap = call.codec_map(channel)
        self.fmtp = call.fmtp_map(channel)
        self.resamplers: dict[int, Resampler] = {}
        self.decode_errors = 0
        # Payload types either side offered: anything else on these ports is not this
        # call's audio (T.38 UDPTL after a re-INVITE, stray traffic) and is kept out.
        self.allowed = {
            int(f) for side in call.offers for o in side for f in o.formats if f.isdigit()
        } or ANY_PT  # no SDP (an unsignalled call): any RTP payload type
        self.unexpected_pt = 0
        self.unknown_packets = 0
        # Media before the answer (183 early media, or a call never answered) is early.
        self.answer_ns = call.answer_ns or (1 << 62 if not call.unsignalled else 0)
        self.early_packets = 0
        self.late_packets = 0
        self.events: TelephoneEvents | None = None
        self.sr_seen: dict[int, int] = {}
        """Middle 32 bits of this party's SR NTP timestamps -> capture time seen."""
        self.far_end: dict[int, dict[str, Any]] = {}
        """What the receiving party's RTCP last reported about each of these SSRCs."""
        self.audio_end = -1
        """Output position just after the last audio placed (comfort noise starts there)."""
        self.codecs_used: set[str] = set()
        self.cn_level = -1
        """Level of comfort noise announced since the last audio packet, -1 for none."""
        # SRTP: the SDP said RTP/SAVP, or the user gave a key for these streams.
        self.secure = any("SAVP" in o.proto.upper() for side in call.offers for o in side)
        self.sdes = _sdes_key(call, channel)
        self.user_keys = user_keys
        self.endpoints = {ep for f, ch in zip(call.flows, channels, strict=True) if ch == channel
                          for ep in (f[0], f[1])}
        self._decryptors: dict[int, tuple[Decryptor | None, str]] = {}
        self.srtp_auth_failed = 0
        self.srtp_no_key = 0
        self.srtp_keys_used: set[str] = set()
        # Without SDP nothing says a stream is SRTP; encrypted payloads are byte-uniform,
        # audio is not, so an unsignalled stream's byte entropy decides.
        self.sniff = call.unsignalled
        self.histogram = np.zeros(256, dtype=np.int64)
        self.sniffed = 0
        self.looks_encrypted = False
        self.decoders: dict[int, Decoder | None] = {}
        self.seg1 = Segmenter()
        self.seg2 = Segmenter()
        self.segments: list[Segment] = []
        self.stats: dict[int, StreamStats] = {}
        self.ssrc_overflow = 0
        self.malformed: Counter[str] = Counter()
        self.rtcp = 0
        self.control = 0
        self.unknown: dict[int, str] = {}
        self.placed = 0
        self.first_ns = 0
        self.last_ns = 0

    def _key(self, ssrc: int) -> tuple[str, bytes, str] | None:
        """(suite, key, where it came from) for a stream: an SSRC-specific user key, then an
        address-specific one, then the SDP's SDES key, then a user key for any stream."""
        ranked = sorted((k for k in self.user_keys if k.matches(ssrc, self.endpoints)),
                        key=lambda k: (k.ssrc is None, k.endpoint is None))
        specific = [k for k in ranked if k.ssrc is not None or k.endpoint is not None]
        if specific:
            return specific[0].suite, specific[0].key, "user"
        if self.sdes is not None:
            return self.sdes[0], self.sdes[1], "sdes"
        if ranked:
            return ranked[0].suite, ranked[0].key, "user"
        return None

    def encrypted(self, ssrc: int) -> bool:
        if ssrc not in self._decryptors:
            key = self._key(ssrc)
            if key is None:
                self._decryptors[ssrc] = (None, "")
            else:
                try:
                    self._decryptors[ssrc] = (Decryptor(key[0], key[1]), f"{key[0]} ({key[2]})")
                except SrtpKeyError:
                    self._decryptors[ssrc] = (None, "")
        return self.secure or self._decryptors[ssrc][0] is not None

    def decrypt(self, ssrc: int, packet: bytes) -> bytes | None:
        """Plain RTP; None (counted) without a key or when authentication fails."""
        dec, label = self._decryptors[ssrc]
        if dec is None:
            self.srtp_no_key += 1
            return None
        plain = dec.unprotect(packet)
        if plain is None:
            self.srtp_auth_failed += 1
        else:
            self.srtp_keys_used.add(label)
        return plain

    def decoder(self, pt: int) -> tuple[Decoder | None, int]:
        """Decoder and RTP clock for a payload type (None for control/unknown payloads)."""
        if pt not in self.decoders:
            name, clock, chans = resolve(pt, self.rtpmap)
            dec = None
            if name and name not in CONTROL:
                dec = decoder_for(name, clock, chans, self.fmtp.get(pt, ""))
            self.decoders[pt] = dec
            if dec is None and name not in CONTROL:
                self.unknown[pt] = f"{name}/{clock}" if name else "unmapped"
        dec = self.decoders[pt]
        return dec, dec.clock if dec else 0


def _cap(ts_ns: int, origin: int, clock: int) -> int:
    return (ts_ns - origin) * clock // NS


WriteResult = tuple[dict[str, Any], dict[str, int]]
"""(index entry, media packets of the call not used, by reason)."""


def write_call(call: Call, spool: str | None, out_dir: str,
               options: WriteOptions = DEFAULTS) -> WriteResult:
    """Write the files of ``call`` under ``out_dir`` and append its index line.

    Returns the index entry and the call's media packets not used, by reason."""
    channels = assign_channels(call.flows, _losing_branches(call))
    keys = options.srtp_keys
    dirs = (_Direction(call, 0, channels, keys), _Direction(call, 1, channels, keys))
    rtcp_flow = [f[4] == 1 for f in call.flows]
    unassigned = 0
    origin = -1
    rate = 0
    # Pass 1: segment clock mappings.
    if spool is not None:
        for ts, flow, payload in read_spool(spool):
            if origin < 0:
                origin = ts
            ch = channels[flow]
            if ch < 0:
                unassigned += 1
                continue
            d = dirs[ch]
            if rtcp_flow[flow]:
                d.rtcp += 1
                continue
            try:
                pt, _m, seq, rts, ssrc, _a, _b = parse_rtp(payload)
            except RtpError:
                continue
            if pt not in d.allowed:
                continue
            dec, clock = d.decoder(pt)
            if dec is None:
                if pt in d.unknown:
                    d.unknown_packets += 1
                continue
            if d.sniff and d.sniffed < SNIFF_PACKETS:
                d.histogram += np.bincount(np.frombuffer(payload[_a:_b], np.uint8), minlength=256)
                d.sniffed += 1
            rate = max(rate, dec.rate)
            cap = _cap(ts, origin, clock)
            # a stream moved to a new address (re-INVITE) is a new mapping: (SSRC, flow)
            idx, ext = d.seg1.place(ssrc << 16 | flow, clock, seq, rts, cap)
            if idx < 0:
                continue
            transit = cap - ext
            if idx == len(d.segments):
                d.segments.append(Segment(ssrc, clock, transit, ext, ts, dec.name))
            else:
                d.segments[idx].add(ext, transit, ts)
    for d in dirs:
        if d.sniff and d.histogram.sum() >= SNIFF_MIN_BYTES:
            p = d.histogram[d.histogram > 0] / d.histogram.sum()
            entropy = float(-(p * np.log2(p)).sum())
            if entropy > ENCRYPTED_ENTROPY and not any(d.encrypted(s.ssrc) for s in d.segments):
                d.looks_encrypted = d.secure = True
    for d in dirs:
        for seg in d.segments:
            seg.fit()
    gaps = collapse_gaps([s for d in dirs for s in d.segments], rate) if rate else 0
    starts = [s.start() * rate // s.clock - s.shift for d in dirs for s in d.segments]
    base = min(starts) if starts else 0
    audio_start_ns = origin + base * NS // rate if rate else 0
    # Media nobody can decode still gets a (silent) recording, a packet time per packet,
    # so the call shows it had media; the summary says why it is silent.
    silent_only = not rate and (any(d.unknown_packets for d in dirs) or call.video_span[1])
    if silent_only:
        rate, audio_start_ns = 8000, origin if origin >= 0 else call.video_span[0]

    rel, stem = call_stem(call.call_id, call.start_ns)
    target = os.path.join(out_dir, rel)
    os.makedirs(target, exist_ok=True)
    audio_files: list[str] = []
    window: StereoWindow | None = None
    out: AudioOut | None = None
    try:
        if rate:
            out = AudioOut(os.path.join(target, stem), options.audio_format, options.layout,
                           rate)
            window = StereoWindow(rate, out.write)
        if spool is not None:
            noise = np.random.default_rng(call.serial) if options.comfort_noise == "noise" else None
            _pass2(spool, dirs, channels, rtcp_flow, window, origin, rate, base, noise)
        if window is not None and out is not None:
            if silent_only:
                for d in dirs:
                    window.put(d.channel, d.unknown_packets * 160, EMPTY)
                # only video or fax was seen: silence as long as it lasted (bounded)
                span = min(call.video_span[1] - call.video_span[0], MAX_GAP_SECONDS * NS)
                window.put(0, span * rate // NS, EMPTY)
            window.close()
            audio_files = [os.path.relpath(p, out_dir) for p in out.close()]
    except BaseException:
        if out is not None:
            out.abort()
        raise
    audio_rel = audio_files[0] if audio_files else None

    directions = [_direction_json(call, d, window, rate, channels) for d in dirs]
    for d, x in zip(dirs, directions, strict=True):
        x["capture_integrity"] = _integrity(call, d, directions[1 - d.channel])
    warnings: list[str] = []
    if gaps:
        warnings.append(f"the capture clock jumped {gaps} time(s) by more than "
                        f"{MAX_GAP_SECONDS} s; each jump is one second of silence")
    if silent_only and call.video_span[1] and not any(d.unknown_packets for d in dirs):
        warnings.append("only non-audio media (video, fax) was seen; the recording is silent")
    for d in dirs:
        who = f"channel {d.channel} ({SIDE_NAMES[d.channel]})"
        if d.srtp_no_key:
            what = ("packets whose payload looks encrypted (SRTP without signalling?)"
                    if d.looks_encrypted else "SRTP packets")
            warnings.append(f"{who}: {d.srtp_no_key} {what} and no key for them (give one "
                            "with --srtp-key); their audio is left silent")
        if d.srtp_auth_failed:
            warnings.append(f"{who}: {d.srtp_auth_failed} SRTP packets failed authentication "
                            "(wrong key?); their audio is left silent")
        for pt, name in sorted(d.unknown.items()):
            warnings.append(
                f"channel {d.channel} ({SIDE_NAMES[d.channel]}): payload type {pt} ({name}) "
                "has no decoder; its audio is left silent"
            )
    codecs = sorted({c for x in directions for c in x["codecs"]})
    dtmf = _dtmf(call, dirs, audio_start_ns if rate else max(origin, call.start_ns))
    call_json = _call_json(call)
    summary: dict[str, Any] = {
        "call": call_json,
        "audio": audio_rel,
        "audio_files": audio_files,
        "audio_format": options.audio_format if audio_files else None,
        "layout": options.layout if audio_files else None,
        "sample_rate": rate,
        "channels": {"0": "caller", "1": "callee"},
        "audio_start": rfc3339(audio_start_ns) if rate else None,
        "audio_start_ns": audio_start_ns if rate else None,
        "audio_frames": window.written if window else 0,
        "media_start_ns": max(origin, 0),
        "directions": directions,
        "dtmf": dtmf,
        "warnings": warnings,
        "unassigned_media_packets": unassigned,
        "recorder_version": VERSION,
    }
    xml = build_metadata(summary)
    summary_path = os.path.join(target, stem + ".json")
    # Same stem = same Call-ID and start time: a re-import of a call already indexed.
    indexed_before = os.path.exists(summary_path)
    write_atomic(os.path.join(target, stem + ".xml"), xml)
    write_atomic(
        summary_path,
        (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
    )
    entry = {
        "call_id": call.call_id,
        "audio": audio_rel,
        "audio_files": audio_files,
        "metadata": f"{rel}/{stem}.xml",
        "summary": f"{rel}/{stem}.json",
        "caller": call.caller_uri,
        "callee": call.callee_uri,
        "start": call_json["start"],
        "answer": call_json["answer"],
        "end": call_json["end"],
        "duration": call_json["duration"],
        "status": call.status,
        "end_reason": call.end_reason,
        "final_code": call.final_code,
        "codecs": codecs,
        "dtmf": "".join(x["digit"] for x in dtmf),
        "early_media": any(x["early_media_packets"] for x in directions),
        "mos": [x["quality"]["mos"] if x["quality"] else None for x in directions],
        "post_dial_delay": call_json["post_dial_delay"],
        "setup_time": call_json["setup_time"],
        "hangup_by": call.hangup_by,
        "packets": [x["packets"] for x in directions],
        "lost": [x["lost"] for x in directions],
    }
    if not indexed_before:
        append_index(out_dir, entry)
    drops: Counter[str] = Counter()
    if unassigned:
        drops["media_flow_unassigned"] = unassigned
    for d in dirs:
        for reason, count in d.malformed.items():
            drops[f"malformed_rtp ({reason})"] += count
        drops["rtp_unexpected_payload_type"] += d.unexpected_pt
        drops["rtp_too_late"] += d.late_packets
        drops["rtp_ssrc_limit"] += d.ssrc_overflow
        drops["rtp_decode_error"] += d.decode_errors
        drops["srtp_auth_failed"] += d.srtp_auth_failed
        drops["srtp_no_key"] += d.srtp_no_key
    return entry, {k: v for k, v in drops.items() if v}


def _pass2(
    spool: str,
    dirs: tuple[_Direction, _Direction],
    channels: list[int],
    rtcp_flow: list[bool],
    window: StereoWindow | None,
    origin: int,
    rate: int,
    base: int,
    noise: np.random.Generator | None,
) -> None:
    """Statistics, decoding and placement of every RTP packet of the call; with ``noise``,
    comfort noise (RFC 3389) fills the silence it stands for at the level it gives."""
    for ts, flow, payload in read_spool(spool):
        ch = channels[flow]
        if ch < 0:
            continue
        d = dirs[ch]
        if rtcp_flow[flow]:
            if not d.secure:  # SRTCP report blocks are encrypted
                _rtcp(ts, payload, d, dirs[1 - ch])
            continue
        try:
            pt, _m, seq, rts, ssrc, a, b = parse_rtp(payload)
        except RtpError as exc:
            d.malformed[str(exc)] += 1
            continue
        if pt not in d.allowed:
            d.unexpected_pt += 1
            continue
        if not d.first_ns:
            d.first_ns = ts
        d.last_ns = ts
        if ts < d.answer_ns:
            d.early_packets += 1
        dec, clock = d.decoder(pt)
        name = ""
        if dec is None:
            name, clock, _ = resolve(pt, d.rtpmap)
            if name in CONTROL:
                d.control += 1
        st = d.stats.get(ssrc)
        if st is None:
            if len(d.stats) >= MAX_SSRCS:
                d.ssrc_overflow += 1
                continue
            st = d.stats[ssrc] = StreamStats(ssrc, clock or 8000, JITTER_BUFFER_MS)
        # the same packets as pass 1 go through the segmenter, so segment numbers agree
        idx = ext = 0
        if dec is not None:
            idx, ext = d.seg2.place(ssrc << 16 | flow, clock, seq, rts,
                                    (ts - origin) * clock // NS)
        if not st.add(seq, rts, ts, pt):
            continue  # duplicate
        if dec is not None and idx < 0:
            d.late_packets += 1
            continue
        if d.encrypted(ssrc):
            plain = d.decrypt(ssrc, payload)
            if plain is None:
                continue
            try:
                a, b = parse_rtp(plain)[5:7]
            except RtpError as exc:
                d.malformed[str(exc)] += 1
                continue
            payload = plain
        if dec is None:
            if not name and d.sniff and pt >= 96 and b - a == 4:
                # No SDP to say so, but a 4-byte dynamic payload is an RFC 4733 event.
                name = "TELEPHONE-EVENT"
                d.unknown.pop(pt, None)
                d.control += 1
            if name == "TELEPHONE-EVENT":
                if d.events is None:
                    d.events = TelephoneEvents(clock or 8000)
                d.events.feed(ts, rts, payload[a:b])
            elif name == "CN" and noise is not None and b > a and d.audio_end >= 0:
                d.cn_level = payload[a]  # -dBov (RFC 3389 section 3)
            continue
        assert window is not None
        seg = d.segments[idx]
        pos = (ext + seg.floor(ext)) * rate // clock - seg.shift - base
        try:
            samples = dec.decode(payload[a:b])
        except DecodeError:
            d.decode_errors += 1
            continue
        if dec.rate != rate:
            rs = d.resamplers.get(dec.rate)
            if rs is None:
                rs = d.resamplers[dec.rate] = Resampler(dec.rate, rate)
            samples = rs.process(samples)
            pos -= round(rs.delay)
        if d.cn_level >= 0 and noise is not None:
            gap = min(pos - d.audio_end, rate * MAX_CN_SECONDS)
            if gap > 0:
                rms = 32767.0 * 10 ** (-d.cn_level / 20)
                fill = np.clip(noise.normal(0.0, rms, gap), -32768, 32767).astype(np.int16)
                window.put(d.channel, d.audio_end, fill)
            d.cn_level = -1
        window.put(d.channel, pos, samples)
        if 0 <= d.audio_end < pos:  # silence filled between this packet and the last
            seg.gap_samples += pos - d.audio_end
        seg.packets += 1
        d.audio_end = max(d.audio_end, pos + len(samples))
        d.placed += 1
        d.codecs_used.add(dec.name)


# Sender reports remembered per direction to match LSR for round-trip times.
MAX_SR_REMEMBERED = 32


def _rtcp(ts: int, payload: bytes, sender: _Direction, other: _Direction) -> None:
    """What ``sender``'s RTCP says: its reports on the media it receives (``other``'s
    stream), and the round-trip time from LSR/DLSR against ``other``'s sender reports
    (RFC 3550 section 6.4.1), as the mirror saw them."""
    try:
        reports, _byes = parse_rtcp(payload)
    except RtpError as exc:
        sender.malformed[f"RTCP: {exc}"] += 1
        return
    for r in reports:
        if r.kind == SR:
            sender.sr_seen[(r.ntp >> 16) & 0xFFFFFFFF] = ts
            while len(sender.sr_seen) > MAX_SR_REMEMBERED:
                del sender.sr_seen[next(iter(sender.sr_seen))]
        for about, fraction, cumulative, _ext, jitter, lsr, dlsr in r.blocks:
            st = other.stats.get(about)
            if st is None:
                continue
            sent = other.sr_seen.get(lsr) if lsr else None
            rtt = (ts - sent) / 1e6 - dlsr * 1000 / 65536 if sent is not None else None
            other.far_end[about] = {
                "fraction_lost_pct": round(fraction * 100 / 256, 2),
                "cumulative_lost": cumulative,
                "jitter_ms": round(jitter * 1000 / st.clock, 3),
                "rtt_ms": round(rtt, 3) if rtt is not None and rtt >= 0 else None,
            }


# Share of the observed loss the receiver must report for it to be the network's.
NETWORK_SHARE = 0.5


def _integrity(call: Call, d: _Direction, other: dict[str, Any]) -> dict[str, Any]:
    """Whose loss is it: the network's (the receiver's RTCP reports it too), the capture's
    (the receiver reports none: the mirror dropped it), or a party missing entirely from
    an answered two-way call (asymmetric mirroring)."""
    observed = sum(s.lost for s in d.stats.values())
    reported = sum(max(0, r["cumulative_lost"]) for r in d.far_end.values())
    packets = sum(s.packets for s in d.stats.values())
    evidence = {"observed_lost": observed, "reported_lost": reported,
                "receiver_reports": len(d.far_end)}
    mine, theirs = call.offers[d.channel], call.offers[1 - d.channel]
    should_send = bool(mine and theirs) and mine[-1].direction in ("sendrecv", "sendonly") \
        and theirs[-1].direction in ("sendrecv", "recvonly")
    if packets == 0 and other["packets"] > 0 and call.answer_ns and should_send:
        evidence["other_direction_packets"] = other["packets"]
        return {"verdict": "asymmetric-mirror", "evidence": evidence}
    if observed == 0:
        return {"verdict": "none", "evidence": evidence}
    if not d.far_end:
        return {"verdict": "unknown", "evidence": evidence}
    if reported == 0:
        return {"verdict": "capture-loss", "evidence": evidence}
    if reported >= observed * NETWORK_SHARE:
        return {"verdict": "network-loss", "evidence": evidence}
    return {"verdict": "mixed", "evidence": evidence}


def _dtmf(call: Call, dirs: tuple[_Direction, _Direction], zero_ns: int) -> list[dict[str, Any]]:
    """Digits from both directions' telephone-events and from SIP INFO, in time order;
    ``offset`` is seconds from sample 0 of the recording."""
    found: list[dict[str, Any]] = []
    for d in dirs:
        if d.events is not None:
            for ev in d.events.finish():
                found.append({**ev, "side": SIDE_NAMES[d.channel]})
    for ts, side, digit, duration in call.sip_dtmf:
        found.append({"digit": digit, "start_ns": ts, "duration_ms": duration,
                      "source": "sip-info", "side": SIDE_NAMES[side]})
    found.sort(key=lambda x: int(x["start_ns"]))
    for x in found:
        x["time"] = rfc3339(x["start_ns"])
        x["offset"] = round((x.pop("start_ns") - zero_ns) / NS, 3)
    return found


def _holds(call: Call, sender: int) -> list[dict[str, str | None]]:
    """Periods in which ``sender`` was not to send (RFC 3264 section 8.4): its own offers
    said sendonly->recvonly is theirs; here: either side's inactive, the sender's recvonly,
    or the receiver's sendonly, from the media history in time order."""
    events = sorted((o.time_ns, side, o.direction) for side in (0, 1) for o in call.offers[side])
    held_by = {0: False, 1: False}
    periods: list[dict[str, str | None]] = []
    start = 0
    for ts, side, direction in events:
        before = any(held_by.values())
        quiet = direction == "inactive" or (
            direction == "recvonly" if side == sender else direction == "sendonly")
        held_by[side] = quiet
        after = any(held_by.values())
        if after and not before:
            start = ts
        elif before and not after:
            periods.append({"start": rfc3339(start), "end": rfc3339(ts)})
    if any(held_by.values()):
        periods.append({"start": rfc3339(start), "end": None})
    return periods


def _call_json(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "caller": call.caller_uri,
        "caller_name": call.caller_name,
        "callee": call.callee_uri,
        "callee_name": call.callee_name,
        "caller_tag": call.caller_tag,
        "callee_tag": call.callee_tag,
        "caller_signalling": _ep(call.caller_signal),
        "callee_signalling": _ep(call.callee_signal),
        "user_agent": call.user_agent,
        "start": rfc3339(call.start_ns),
        "start_ns": call.start_ns,
        "answer": rfc3339(call.answer_ns) if call.answer_ns else None,
        "end": rfc3339(call.end_ns),
        "end_ns": call.end_ns,
        "duration": round(max(0, call.end_ns - call.start_ns) / NS, 3),
        "talk_time": round(max(0, call.end_ns - call.answer_ns) / NS, 3) if call.answer_ns else 0,
        "status": call.status,
        "final_code": call.final_code,
        "final_reason": call.final_reason,
        "end_reason": call.end_reason,
        "hangup_by": call.hangup_by,
        "post_dial_delay": round((call.ringing_ns - call.start_ns) / NS, 3)
        if call.ringing_ns else None,
        "setup_time": round((call.answer_ns - call.start_ns) / NS, 3) if call.answer_ns else None,
        "reason": {"protocol": call.reason[0], "cause": call.reason[1], "text": call.reason[2]}
        if call.reason else None,
        "sip_retransmissions": call.retransmissions,
        "sip_messages": call.sip_messages,
        "illegal_transitions": call.illegal_transitions,
        "media": {SIDE_NAMES[s]: [o.to_json() for o in call.offers[s]] for s in (0, 1)},
    }


def _ep(ep: tuple[bytes, int] | None) -> str:
    if ep is None:
        return ""
    host = format_ip(ep[0])
    return f"[{host}]:{ep[1]}" if ":" in host else f"{host}:{ep[1]}"


def _direction_json(
    call: Call, d: _Direction, window: StereoWindow | None, rate: int, channels: list[int]
) -> dict[str, Any]:
    flows = [f for f, ch in zip(call.flows, channels, strict=True) if ch == d.channel and not f[4]]
    ssrcs = [s.to_json() for s in d.stats.values()]
    jit_max = max((s["jitter_ms_max"] for s in ssrcs), default=0.0)
    expected = sum(s.expected for s in d.stats.values())
    heard_lost = sum(s.lost + s.jb_discards for s in d.stats.values())
    codec = sorted(d.codecs_used)[0] if d.codecs_used else ""
    quality = None
    if expected and codec:
        loss = min(100.0, heard_lost * 100.0 / expected)
        worst = max(s.worst_second_loss for s in d.stats.values())
        r = r_factor(codec, loss)
        quality = {"r_factor": round(r, 2), "mos": round(mos(r), 2),
                   "loss_heard_pct": round(loss, 2),
                   "jitter_buffer_ms": JITTER_BUFFER_MS,
                   "worst_second_mos": round(mos(r_factor(codec, worst)), 2)}
    jit_mean = max((s["jitter_ms_mean"] for s in ssrcs), default=0.0)
    return {
        "channel": d.channel,
        "side": SIDE_NAMES[d.channel],
        "src": _ep(flows[0][0]) if flows else "",
        "dst": _ep(flows[0][1]) if flows else "",
        "flows": [f"{_ep(f[0])} -> {_ep(f[1])}" for f in flows],
        "packets": sum(s.packets for s in d.stats.values()),
        "expected": sum(s.expected for s in d.stats.values()),
        "lost": sum(s.lost for s in d.stats.values()),
        "duplicates": sum(s.duplicates for s in d.stats.values()),
        "out_of_order": sum(s.out_of_order for s in d.stats.values()),
        "late_packets": d.late_packets,
        "early_media_packets": d.early_packets,
        "late_ms": round(window.late_samples[d.channel] * 1000 / rate, 1) if window else 0.0,
        "jitter_ms_mean": jit_mean,
        "quality": quality,
        "jitter_ms_max": jit_max,
        "malformed_rtp": dict(d.malformed),
        "rtcp_packets": d.rtcp,
        "far_end_reports": {f"0x{k:08x}": v for k, v in sorted(d.far_end.items())},
        "control_packets": d.control,
        "unexpected_payload_type": d.unexpected_pt,
        "decode_errors": d.decode_errors,
        "srtp": {"keys": sorted(d.srtp_keys_used), "auth_failed": d.srtp_auth_failed,
                 "no_key": d.srtp_no_key} if d.secure or d.srtp_keys_used else None,
        "ssrcs": ssrcs,
        "ssrc_overflow": d.ssrc_overflow,
        "codecs": sorted(d.codecs_used),
        "first_packet": rfc3339(d.first_ns) if d.first_ns else None,
        "last_packet": rfc3339(d.last_ns) if d.last_ns else None,
        "segments": [
            {
                "ssrc": f"0x{s.ssrc:08x}",
                "codec": s.codec,
                "start": rfc3339(s.first_ns),
                "end": rfc3339(s.last_ns),
                "clock_drift_ppm": round(s.b * 1e6, 1),
                "packets": s.packets,
                "gaps_filled_ms": round(s.gap_samples * 1000 / rate, 1) if rate else 0.0,
                "early_media": s.first_ns < d.answer_ns,
            }
            for s in d.segments
        ],
        "hold": _holds(call, d.channel),
    }
