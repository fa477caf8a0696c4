"""Joining a B2BUA's legs by their media, for SBCs that signal no link (an opt-in): the
B-leg carries the A-leg's audio a few milliseconds later, possibly transcoded. Each ended
call keeps the first seconds of its decoded G.711 audio per direction, placed by capture
time; two calls are one conversation when, where they overlap, each direction's waveform
of one matches the other's within a few milliseconds (decoded samples are compared, so
PCMU on one leg and PCMA on the other still match; a different conversation does not,
however alike its loudness). A call waits a bounded time for its partner. Sans-IO:
capture times only; the shells hand over each call's media columns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from correlate.record import CallRecord
from writer.columns import MediaColumns, parse_rtp_columns
from writer.flows import assign_channels
from writer.g711 import ALAW_DECODE, ULAW_DECODE

RATE = 8000
NS = 1_000_000_000
# Audio kept per call and direction to compare: the first seconds of its media.
KEEP_SECONDS = 4
# Audio two legs must share to be compared, in samples (one second).
MIN_SHARED = RATE
# How far one leg's copy may lag the other's: an SBC forwards within milliseconds; 40 ms
# leaves room for a transcoder's buffer.
MAX_LAG = RATE * 40 // 1000
# Normalised correlation of the waveforms that makes two calls one conversation.
MIN_MATCH = 0.8
# An ended call waits this long (capture time) for a partner found by its media, and at
# most this many wait at once (each holds KEEP_SECONDS of audio: 128 KB).
WAIT_NS = 10 * NS
MAX_HELD = 200
F32 = npt.NDArray[np.float32]


@dataclass
class Held:
    record: CallRecord
    media: Any
    audio: tuple[F32 | None, F32 | None]
    start_ns: int
    until_ns: int


def first_audio(record: CallRecord, cols: MediaColumns) -> tuple[tuple[F32 | None, F32 | None],
                                                                  int]:
    """Per direction, the decoded G.711 audio of the call's first KEEP_SECONDS of media,
    each packet where its capture time puts it (None for a direction with none), and the
    capture time of sample 0."""
    if not len(cols):
        return (None, None), 0
    call = record.call
    channels = np.array([*assign_channels(call.flows), -1], np.int64)
    rtp = parse_rtp_columns(cols)
    ch = channels[np.minimum(cols.flow, len(call.flows))]
    ok = (rtp.error == 0) & ((rtp.pt == 0) | (rtp.pt == 8)) & (ch >= 0)
    t0 = int(cols.ts[0])
    n = KEEP_SECONDS * RATE
    ok &= cols.ts < t0 + KEEP_SECONDS * NS
    out: list[F32 | None] = []
    for c in (0, 1):
        idx = np.flatnonzero(ok & (ch == c))
        if not len(idx):
            out.append(None)
            continue
        audio = np.zeros(n, np.float32)
        for i in idx.tolist():  # at most KEEP_SECONDS of 20 ms packets
            o = int(cols.off[i]) + int(rtp.start[i])
            body = cols.data[o:o + int(rtp.end[i]) - int(rtp.start[i])]
            pcm = (ULAW_DECODE if rtp.pt[i] == 0 else ALAW_DECODE)[body]
            at = (int(cols.ts[i]) - t0) * RATE // NS
            take = min(len(pcm), n - at)
            if take > 0:
                audio[at:at + take] = pcm[:take]
        out.append(audio)
    return (out[0], out[1]), t0


def _match(a: F32, a0: int, b: F32, b0: int) -> float:
    """The best normalised correlation of two placed waveforms within MAX_LAG samples of
    their capture-time alignment (-1 when they share too little)."""
    shift = (b0 - a0) * RATE // NS  # b's sample 0 in a's samples
    lo, hi = max(0, shift) + MAX_LAG, min(len(a), shift + len(b)) - MAX_LAG
    if hi - lo < MIN_SHARED:
        return -1.0
    x = a[lo:hi].astype(np.float64)
    best = -1.0
    for lag in range(-MAX_LAG, MAX_LAG + 1, 2):
        y = b[lo - shift + lag:hi - shift + lag].astype(np.float64)
        denom = float(np.linalg.norm(x) * np.linalg.norm(y))
        if denom > 0:
            best = max(best, float(np.dot(x, y)) / denom)
    return best


class MediaJoiner:
    """Ended calls in, calls to write out: a pair whose audio matches as one recording."""

    def __init__(self) -> None:
        self.held: list[Held] = []

    def ended(self, record: CallRecord, media: Any, cols: MediaColumns, now: int
              ) -> list[tuple[CallRecord, list[Any]]]:
        """A call ended: the calls now to be written (it with its partner, calls that
        waited long enough, or itself when it has no G.711 audio to judge by)."""
        out = self.expire(now)
        audio, start = first_audio(record, cols)
        if audio[0] is None and audio[1] is None:
            return [*out, (record, [media])]
        for h in self.held:
            scores = [_match(mine, start, theirs, h.start_ns)
                      for mine, theirs in zip(audio, h.audio, strict=True)
                      if mine is not None and theirs is not None]
            if scores and min(scores) >= MIN_MATCH:
                self.held.remove(h)
                if h.record.call.start_ns <= record.call.start_ns:
                    return [*out, (replace(h.record, legs=(record.call,)), [h.media, media])]
                return [*out, (replace(record, legs=(h.record.call,)), [media, h.media])]
        if len(self.held) >= MAX_HELD:
            old = self.held.pop(0)
            out.append((old.record, [old.media]))
        self.held.append(Held(record, media, audio, start, now + WAIT_NS))
        return out

    def expire(self, now: int) -> list[tuple[CallRecord, list[Any]]]:
        """Calls that waited WAIT_NS without a partner: written on their own."""
        gone = [h for h in self.held if h.until_ns <= now]
        self.held = [h for h in self.held if h.until_ns > now]
        return [(h.record, [h.media]) for h in gone]

    def flush(self) -> list[tuple[CallRecord, list[Any]]]:
        gone, self.held = self.held, []
        return [(h.record, [h.media]) for h in gone]
