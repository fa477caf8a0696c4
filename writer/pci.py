"""Keeping card numbers and PINs out of recordings (PCI DSS): DTMF tones heard in the audio
(ITU-T Q.23 frequency pairs, found with the Goertzel algorithm over 25.6 ms frames) and
the periods of RFC 4733 telephone events are silenced in every channel, and the digits
themselves are replaced by "*" wherever a call's files name them (their times stay)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
NS = 1_000_000_000
LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
# Audio held back before it goes on: a tone found in a frame silences the frames around
# it, so this much of them must still be here.
LOOKAHEAD_S = 0.25
# Silenced before and after a tone or an event, beyond what was detected: its ramp, and
# the capture-to-audio offset of an RFC 4733 event.
GUARD_S = 0.06
# A frame holds a DTMF pair when its two strongest tones (one of each group) carry this
# share of its energy, each at least MIN_TONE of it, no other tone of a group comes near,
# and it is louder than MIN_RMS (about -50 dBFS).
PAIR_SHARE = 0.7
MIN_TONE = 0.15
OTHER_MAX = 0.25
MIN_RMS = 100.0
# Twist (high tone over low tone power) allowed, as ratios: Q.24's 8 dB reverse and 4 dB
# normal twist, with a little room.
TWIST = (10 ** (-9 / 10), 10 ** (5 / 10))
# Frames in a row a tone must last (Q.24: tones of 40 ms or more are digits).
MIN_FRAMES = 2
# An RFC 4733 event still open is silenced this long after its start at least.
OPEN_EVENT_S = 1.0


def tone_frames(mono: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.bool_]:
    """Per frame of 25.6 ms: whether it holds a DTMF pair (consecutive runs shorter than
    MIN_FRAMES are dropped)."""
    n = max(1, int(round(rate * 0.0256)))
    count = len(mono) // n
    if count == 0:
        return np.zeros(0, bool)
    frames = mono[:count * n].reshape(count, n)
    freqs = np.array(LOW + HIGH)
    t = np.arange(n)
    basis = np.exp(-2j * np.pi * np.outer(t, freqs) / rate)
    power = np.abs(frames @ basis) ** 2
    energy = (frames ** 2).sum(axis=1)
    rel = power / np.maximum(n * energy / 2, 1e-9)[:, None]
    lo, hi = rel[:, :4], rel[:, 4:]
    lo_best, hi_best = lo.max(axis=1), hi.max(axis=1)
    lo_next = np.sort(lo, axis=1)[:, -2]
    hi_next = np.sort(hi, axis=1)[:, -2]
    rms = np.sqrt(energy / n)
    twist = hi_best / np.maximum(lo_best, 1e-12)
    hit = ((lo_best + hi_best >= PAIR_SHARE) & (lo_best >= MIN_TONE) & (hi_best >= MIN_TONE)
           & (lo_next <= OTHER_MAX * lo_best) & (hi_next <= OTHER_MAX * hi_best)
           & (rms >= MIN_RMS) & (twist >= TWIST[0]) & (twist <= TWIST[1]))
    # runs shorter than MIN_FRAMES are not digits
    keep = np.zeros(count, bool)
    run = 0
    for i, h in enumerate(hit):
        run = run + 1 if h else 0
        if run >= MIN_FRAMES:
            keep[i - run + 1:i + 1] = True
    return keep


class DtmfMask:
    """An audio sink wrapper: frames with DTMF (in-band in any channel, or inside an RFC
    4733 event period that ``spans`` gives in capture time) reach ``sink`` as silence,
    LOOKAHEAD_S late; ``finish`` passes the rest on."""

    def __init__(self, rate: int, zero_ns: int, sink: Callable[[Int16Array], None],
                 spans: Callable[[], list[tuple[int, int]]]) -> None:
        self.rate = rate
        self.zero_ns = zero_ns
        self.sink = sink
        self.spans = spans
        self.held: list[Int16Array] = []
        self.held_frames = 0
        self.pos = 0
        """Output frame of the first held frame."""
        self.frame = max(1, int(round(rate * 0.0256)))
        self.guard = int(GUARD_S * rate)
        self.silenced = 0
        """Frames silenced so far."""
        self._mute_until = 0

    def __call__(self, block: Int16Array) -> None:
        self.held.append(block)
        self.held_frames += len(block)
        if self.held_frames >= int(2 * LOOKAHEAD_S * self.rate):
            self._release(self.held_frames - int(LOOKAHEAD_S * self.rate))

    def finish(self) -> None:
        self._release(self.held_frames)

    def _release(self, count: int) -> None:
        if count <= 0:
            return
        data = np.concatenate(self.held) if len(self.held) > 1 else self.held[0]
        data = data.copy()
        mute = np.zeros(len(data), bool)
        # in-band tones: whole frames aligned to the output, each channel on its own
        offset = (-self.pos) % self.frame
        for ch in range(data.shape[1]):
            hits = tone_frames(data[offset:, ch].astype(np.float64), self.rate)
            for k in np.flatnonzero(hits).tolist():
                at = offset + k * self.frame
                mute[max(0, at - self.guard):at + self.frame + self.guard] = True
        for a_ns, b_ns in self.spans():
            lo = (a_ns - self.zero_ns) * self.rate // NS - self.guard - self.pos
            hi = (b_ns - self.zero_ns) * self.rate // NS + self.guard - self.pos
            if hi > 0 and lo < len(data):
                mute[max(0, lo):max(0, min(len(data), hi))] = True
        if self._mute_until > self.pos:  # a tone found at the end of the last release
            mute[:min(len(data), self._mute_until - self.pos)] = True
        tail = np.flatnonzero(mute[count:])
        if len(tail):
            self._mute_until = self.pos + count + int(tail[-1]) + 1
        data[mute] = 0
        self.silenced += int(mute[:count].sum())
        self.sink(data[:count])
        rest = data[count:]
        self.held = [rest] if len(rest) else []
        self.held_frames = len(rest)
        self.pos += count


def event_spans(events: list[Any]) -> list[tuple[int, int]]:
    """(start, end) capture times of RFC 4733 events, ended or still open."""
    out = []
    for ev in events:
        if ev is None:
            continue
        for d in [*ev.digits, *ev._open.values()]:  # noqa: SLF001 - the open ones too
            dur = int(d["duration"]) * NS // ev.clock
            end = d["start_ns"] + dur
            if d in ev._open.values():  # noqa: SLF001
                end = max(end, d["start_ns"] + int(OPEN_EVENT_S * NS))
            out.append((int(d["start_ns"]), int(end)))
    return out


_SIGNAL = re.compile(rb"(?im)^(\s*Signal\s*=\s*)\S+")
_DTMF_TYPE = re.compile(rb"(?im)^(Content-Type|c)\s*:\s*application/dtmf\s*(;|$)")


def redact_sip(raw: bytes) -> bytes:
    """A SIP message with its INFO DTMF digit hidden (application/dtmf-relay ``Signal=``,
    application/dtmf bodies)."""
    raw = _SIGNAL.sub(rb"\1*", raw)
    cut = raw.find(b"\r\n\r\n")
    head, sep = (raw[:cut], 4) if cut >= 0 else (raw, 0)
    if sep and _DTMF_TYPE.search(head):  # an application/dtmf body is the digit itself
        body = raw[cut + sep:]
        return raw[:cut + sep] + re.sub(rb"[0-9A-Da-d*#]", b"*", body)
    return raw
