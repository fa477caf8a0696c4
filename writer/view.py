"""The dashboard's view of a written call, one small JSON file beside the recording: the
waveform's peaks and per-bucket marks, a quality series per second and direction, the SIP
ladder and the media streams, all on one time axis (seconds from the recording's first
sample), so a call page needs neither the audio decoded nor the summary re-read."""

from __future__ import annotations

import base64
import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from capture.decode import format_ip
from capture.distinct import unique_inverse
from correlate.call import Call, sip_entries
from writer.direction import Direction
from writer.mos import mos, r_factor
from writer.peaks import PEAK_MS
from writer.timefmt import parse_time

NS = 1_000_000_000
BUCKET_NS = PEAK_MS * 1_000_000
VIEW_VERSION = 1
# Per-bucket marks, one bit each.
GAP, HOLD, EARLY, PAUSE, DTMF, SSRC, LOSS = 1, 2, 4, 8, 16, 32, 64
FLAG_BITS = {"loss": LOSS, "gap": GAP, "hold": HOLD, "early_media": EARLY, "pause": PAUSE,
             "dtmf": DTMF, "ssrc_change": SSRC}
"""loss: packets missing from the sequence there; gap: 40 ms or more with no packet (what
the recording fills with silence)."""
Packets = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]
"""One direction's RTP packets: capture times, sequence numbers, SSRCs."""
# Characters of a SIP message's first line shown in the ladder.
LABEL_CHARS = 48


def _b64(a: npt.NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _span(flags: npt.NDArray[np.uint8], zero: int, a: int | None, b: int | None,
          bit: int) -> None:
    n = len(flags)
    if a is None or not n:
        return
    lo = max(0, (a - zero) // BUCKET_NS)
    hi = n if b is None else min(n, (b - zero) // BUCKET_NS + 1)
    if lo < hi:
        flags[lo:hi] |= bit


@functools.lru_cache(maxsize=4096)  # most seconds of most calls lose nothing, or one packet
def _second_mos(codec: str, loss_pct: float, one_way_ms: float) -> float:
    return round(mos(r_factor(codec, loss_pct, one_way_ms)), 2)


def _quality(d: Direction, zero: int, one_way_ms: float) -> dict[str, Any]:
    """Per second of the recording: packets, loss, mean jitter and the MOS that loss
    would give (the summary's model, second by second)."""
    per: dict[int, list[float]] = {}
    for st in d.stats.values():
        for sec, expected, got, jitter in st.seconds:
            at = (st.first_ns - zero) // NS + sec
            row = per.setdefault(at, [0.0, 0.0, 0.0])
            row[0] += expected
            row[1] += got
            row[2] += jitter * got
    codec = sorted(d.codecs_used)[0] if d.codecs_used else ""
    out: dict[str, Any] = {"channel": d.channel, "t": [], "packets": [], "loss_pct": [],
                           "jitter_ms": [], "mos": []}
    for at in sorted(per):
        want, have, jsum = per[at]
        loss = max(0.0, (want - have) * 100.0 / want) if want else 0.0
        out["t"].append(at)
        out["packets"].append(int(have))
        out["loss_pct"].append(round(loss, 2))
        out["jitter_ms"].append(round(jsum / have, 2) if have else 0.0)
        out["mos"].append(_second_mos(codec, loss, one_way_ms) if codec else None)
    return out


def _losses(flags: npt.NDArray[np.uint8], zero: int, ts: npt.NDArray[np.int64],
            seq: npt.NDArray[np.int64], ssrc: npt.NDArray[np.int64]) -> None:
    """Mark LOSS where a stream's sequence numbers skip: the buckets between the packets
    on either side of the missing ones (RFC 3550 A.1's wrap-around unwrapped)."""
    n = len(flags)
    for s in unique_inverse(ssrc)[0].tolist():
        sel = np.flatnonzero(ssrc == s)
        if len(sel) < 2:
            continue
        q = seq[sel]
        step = np.diff(q)
        ext = q + 65536 * np.concatenate(([0], np.cumsum(step < -32768) - np.cumsum(step > 32768)))
        order = np.argsort(ext, kind="stable")
        e, t = ext[order], ts[sel][order]
        skip = np.flatnonzero(np.diff(e) > 1)
        for k in skip.tolist():
            lo = max(0, int((t[k] - zero) // BUCKET_NS) + 1)
            hi = min(n, max(lo + 1, int((t[k + 1] - zero) // BUCKET_NS)))
            if lo < hi:
                flags[lo:hi] |= LOSS


def _first_line(raw: bytes) -> str:
    line = raw.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("utf-8", "replace")
    if line.startswith("SIP/2.0 "):
        return line[8:][:LABEL_CHARS]
    return line.split(" ", 1)[0][:LABEL_CHARS]  # the method


def build_view(summary: dict[str, Any], call: Call, dirs: tuple[Direction, Direction],
               peaks: tuple[npt.NDArray[np.int16], npt.NDArray[np.int16]] | None,
               packets: tuple[Packets, Packets]) -> dict[str, Any]:
    """The view of a call whose summary is ``summary``; ``packets`` are each direction's
    well-formed RTP packets (capture times, sequence numbers, SSRCs), ``peaks`` what
    ``Peaks.finish`` gave."""
    rate = int(summary["sample_rate"] or 0)
    zero = int(summary["audio_start_ns"] or call.start_ns)
    lo, hi = peaks if peaks is not None else (np.zeros((0, 2), np.int16),) * 2
    n = len(lo)
    flags = [np.zeros(n, np.uint8), np.zeros(n, np.uint8)]
    answer = call.answer_ns or None
    for c in (0, 1):
        f = flags[c]
        times, seq, ssrc = packets[c]
        if n and len(times):
            _losses(f, zero, times, seq, ssrc)
            b = (times - zero) // BUCKET_NS
            ok = (b >= 0) & (b < n)
            b, ts = b[ok], times[ok]
            if len(b):
                count = np.bincount(b, minlength=n)
                quiet = count == 0
                quiet[1:] &= count[:-1] == 0  # 40 ms or more without a packet
                active = np.zeros(n, np.bool_)
                active[int(b.min()):int(b.max()) + 1] = True
                f[quiet & active] |= GAP
                # all media of a call never answered came before an answer
                f[b[ts < (answer if answer is not None else 1 << 62)]] |= EARLY
        x = summary["directions"][c]
        for h in x.get("hold", []):
            _span(f, zero, parse_time(h["start"]), parse_time(h["end"]), HOLD)
        prev = None
        for seg in x.get("segments", []):
            if prev is not None and seg.get("ssrc") != prev:
                when = parse_time(seg.get("start"))
                _span(f, zero, when, when, SSRC)
            prev = seg.get("ssrc")
    for pa, pb in call.pauses:
        for f in flags:
            _span(f, zero, pa, pb or None, PAUSE)
    for digit in summary.get("dtmf", []):
        at = zero + int(digit["offset"] * NS)
        ch = 0 if digit.get("side") == "caller" else 1
        _span(flags[ch], zero, at, at + int((digit.get("duration_ms") or 0) * 1_000_000),
              DTMF)
    sip = []
    names: dict[bytes, str] = {}  # a call's messages go between a few addresses
    for when_ns, src, sport, dst, dport, raw in sip_entries(call.sip_log):
        frm = names.get(src) or names.setdefault(src, format_ip(src))
        to = names.get(dst) or names.setdefault(dst, format_ip(dst))
        sip.append({"t": round((when_ns - zero) / NS, 6), "src": f"{frm}:{sport}",
                    "dst": f"{to}:{dport}", "label": _first_line(raw),
                    "text": raw.decode("utf-8", "replace")})
    streams = []
    for x in summary["directions"]:
        for seg in x.get("segments", []):
            sa, sb = parse_time(seg.get("start")), parse_time(seg.get("end"))
            streams.append({"channel": x["channel"], "src": x["src"], "dst": x["dst"],
                            "codec": seg.get("codec"), "ssrc": seg.get("ssrc"),
                            "start": round((sa - zero) / NS, 3) if sa else None,
                            "end": round((sb - zero) / NS, 3) if sb else None})
    one_way = [((x.get("quality") or {}).get("one_way_delay_ms") or 0.0)
               for x in summary["directions"]]
    return {
        "v": VIEW_VERSION,
        "start_ns": zero,
        "rate": rate,
        "frames": summary.get("audio_frames", 0),
        "bucket_ms": PEAK_MS,
        "buckets": n,
        # the high byte of each sample: what a drawing of at most a few thousand pixels uses
        "peaks": {"min": [_b64((lo[:, c] >> 8).astype(np.int8)) for c in (0, 1)],
                  "max": [_b64((hi[:, c] >> 8).astype(np.int8)) for c in (0, 1)]}
        if n else {"min": ["", ""], "max": ["", ""]},  # no audio (most short calls)
        "flags": [_b64(f) for f in flags] if n else ["", ""],
        "flag_bits": FLAG_BITS,
        "quality": [_quality(d, zero, one_way[d.channel]) for d in dirs],
        "sip": sip,
        "streams": streams,
        "dtmf": [{"t": x["offset"], "digit": x["digit"], "side": x.get("side")}
                 for x in summary.get("dtmf", [])],
        "answer": round((answer - zero) / NS, 3) if answer else None,
        "end": round(((call.end_ns or call.last_ns) - zero) / NS, 3),
    }
