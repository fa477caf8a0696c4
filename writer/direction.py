"""The per-direction working state while a call is written: codecs, SRTP keys, counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from correlate.call import Call
from writer.codecs import CONTROL, Decoder, decoder_for, resolve
from writer.dtmf import TelephoneEvents
from writer.resample import Resampler
from writer.srtp import SUITES, Decryptor, SrtpKey, SrtpKeyError, parse_crypto
from writer.stats import StreamStats
from writer.timeline import Segment, Segmenter

ANY_PT = frozenset(range(128)) - frozenset(range(72, 77))
# The byte histogram of a direction that is not sniffed: empty, shared and read-only.
_NO_HISTOGRAM = np.zeros(256, dtype=np.int64)
_NO_HISTOGRAM.flags.writeable = False


def losing_branches(call: Call) -> frozenset[tuple[bytes, int]]:
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


class Direction:
    """Working state of one direction (one channel) while the call is written."""

    # Slots: past 30 attributes an instance's dict no longer shares its keys and grows by
    # resizing; a call without media spent 19 us making each of its two directions.
    __slots__ = (
        "channel", "rtpmap", "fmtp", "resamplers", "decode_errors", "allowed", "unexpected_pt",
        "unknown_packets", "answer_ns", "early_packets", "paused_packets", "late_packets",
        "events", "sr_seen", "far_end", "far_end_xr", "cnames", "audio_end", "codecs_used",
        "cn_level", "secure", "sdes", "user_keys", "endpoints", "_decryptors",
        "srtp_auth_failed", "srtp_no_key", "srtp_keys_used", "sniff", "histogram", "sniffed",
        "looks_encrypted", "decoders", "seg1", "seg2", "segments", "stats", "first_index",
        "ssrc_overflow", "malformed", "rtcp", "control", "unknown", "placed", "first_ns",
        "last_ns",
    )

    def __init__(self, call: Call, channel: int, channels: list[int],
                 user_keys: Sequence[SrtpKey]) -> None:
        self.channel = channel
        self.rtpmap = call.codec_map(channel)
        self.fmtp = call.fmtp_map(channel)
        self.resamplers: dict[int, Resampler] = {}
        self.decode_errors = 0
        # Payload types either side offered: anything else on these ports is not this
        # call's audio (T.38 UDPTL after a re-INVITE, stray traffic) and is kept out.
        # An SDP format past 127 is no RTP payload type (7 bits, RFC 3550 section 5.1).
        self.allowed = {
            int(f) for side in call.offers for o in side for f in o.formats
            if f.isdigit() and int(f) < 128
        } or ANY_PT  # no SDP (an unsignalled call): any RTP payload type
        self.unexpected_pt = 0
        self.unknown_packets = 0
        # Media before the answer (183 early media, or a call never answered) is early.
        self.answer_ns = call.answer_ns or (1 << 62 if not call.unsignalled else 0)
        self.early_packets = 0
        self.paused_packets = 0
        """Packets inside a pause: counted in the statistics, never decoded."""
        self.late_packets = 0
        self.events: TelephoneEvents | None = None
        self.sr_seen: dict[int, int] = {}
        """Middle 32 bits of this party's SR NTP timestamps -> capture time seen."""
        self.far_end: dict[int, dict[str, Any]] = {}
        """What the receiving party's RTCP last reported about each of these SSRCs."""
        self.far_end_xr: dict[int, dict[str, Any]] = {}
        """The receiver's latest RFC 3611 VoIP metrics about each of these SSRCs."""
        self.cnames: dict[int, str] = {}
        """SDES CNAMEs this direction's sender gave for its SSRCs (RFC 3550 section 6.5.1)."""
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
        self.histogram = np.zeros(256, dtype=np.int64) if self.sniff else _NO_HISTOGRAM
        self.sniffed = 0
        self.looks_encrypted = False
        self.decoders: dict[int, Decoder | None] = {}
        self.seg1 = Segmenter()
        self.seg2 = Segmenter()
        self.segments: list[Segment] = []
        self.stats: dict[int, StreamStats] = {}
        """Per stream, keyed by SSRC << 16 | flow: one SSRC relayed on two legs is two streams."""
        self.first_index: dict[int, int] = {}
        """Per stream, the index of its first packet among the call's media."""
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
