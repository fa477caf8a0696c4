"""Render a call's media: statistics, segments, decoding and placement, over columns.

The RTP headers of every packet are parsed at once, each stream is counted with
``StreamStats.add_batch``, and the segmenter (clock mappings) runs once, so the mappings
and the placement can never disagree. A call whose audio is all G.711 in the clear is then
placed on whole columns: counters by masks, the window's late-packet rule followed on
integers, each block of output filled with decoded payloads as matrix rows. Any other call
(other codecs, SRTP, comfort noise to synthesise) is placed packet by packet from the same
precomputed columns, with the same result. Memory is the column arrays (a few dozen bytes
per packet), one block of decoded samples and the output window, whatever the call's
length.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from capture.distinct import present, unique_inverse
from correlate.call import Call
from writer.codecs import CONTROL, EVENTS, Decoder, resolve
from writer.columns import RTP_ERRORS, MediaColumns, RtpColumns, parse_rtp_columns
from writer.direction import Direction
from writer.dtmf import TelephoneEvents
from writer.errors import RtpError
from writer.g711 import ALAW_DECODE, ULAW_DECODE
from writer.options import WriteOptions
from writer.resample import Resampler
from writer.rtcp import SR, parse_rtcp
from writer.rtp import parse_rtp
from writer.stats import StreamStats, packet_clock
from writer.timeline import JUMP_SECONDS, MAX_BUCKETS, Segment, StereoWindow

NS = 1_000_000_000
# Comfort noise fills at most this much of one silence (it must stay inside the window).
MAX_CN_SECONDS = 4
# Payloads sampled per direction of an unsignalled call to tell SRTP from plain RTP.
SNIFF_PACKETS = 64
# SSRCs tracked per direction; a sender changes SSRC a few times at most, hostile streams more.
MAX_SSRCS = 64
# Share of an unsignalled direction's packets a payload type needs to be played.
MIN_TYPE_SHARE = 0.01
# Packets decoded ahead of the placement loop at a time: bounds the decoded samples held
# (160 samples of 2 bytes each per G.711 packet: about 5 MB).
DECODE_CHUNK = 16384
# Codecs decoded by one table lookup over many packets (stateless, one byte per sample).
TABLES: dict[str, npt.NDArray[np.int16]] = {"PCMU/8000": ULAW_DECODE, "PCMA/8000": ALAW_DECODE}
# Sender reports remembered per direction to match LSR for round-trip times.
MAX_SR_REMEMBERED = 32

I64 = npt.NDArray[np.int64]
Int16Array = npt.NDArray[np.int16]


class Plan:
    """What the first look at a call's media found: per packet, its direction, parsed header
    and segment placement; the output rate and the capture time media starts at."""

    __slots__ = ("rtp", "ch", "rtcp", "decodable", "seg", "ext", "rate", "origin",
                 "unassigned")

    def __init__(self, rtp: RtpColumns, ch: I64, rtcp: npt.NDArray[np.bool_],
                 decodable: npt.NDArray[np.bool_], seg: I64, ext: I64, rate: int, origin: int,
                 unassigned: int) -> None:
        self.rtp = rtp
        self.ch = ch
        """Channel of each packet's flow, -1 when not assigned."""
        self.rtcp = rtcp
        self.decodable = decodable
        """Offered payload type with a decoder: these are placed."""
        self.seg = seg
        """Segment of each decodable packet, -1 for one too late to place."""
        self.ext = ext
        """Its extended RTP timestamp within the segment."""
        self.rate = rate
        self.origin = origin
        self.unassigned = unassigned


def plan(call: Call, media: MediaColumns, dirs: tuple[Direction, Direction],
         channels: list[int], sniff: Callable[[Direction, bytes], None]) -> Plan:
    """Classify every packet, build each direction's segments (clock mappings) and find the
    output rate. ``sniff`` sees the first payloads of a direction whose calls had no SDP."""
    n = len(media)
    rtp = parse_rtp_columns(media)
    if not n:  # a call without media (most short calls): nothing to classify
        for d in dirs:
            if d.sniff:
                d.allowed = set()
        none = np.zeros(0, np.int64)
        return Plan(rtp, none, none.astype(np.bool_), none.astype(np.bool_), none, none, 0,
                    -1, 0)
    origin = int(media.ts[0])
    nflows = len(call.flows)
    flow = np.minimum(media.flow, nflows)  # a flow past the call's list has no channel
    ch = np.array([*channels, -1], np.int64)[flow]
    rtcp = np.array([f[4] == 1 for f in call.flows] + [False], np.bool_)[flow] & (ch >= 0)
    unassigned = int(np.count_nonzero(ch == -1))  # OTHER_HOP flows are assigned elsewhere
    ok = (ch >= 0) & ~rtcp & (rtp.error == 0)
    decodable = np.zeros(n, np.bool_)
    seg = np.full(n, -1, np.int64)
    ext = np.zeros(n, np.int64)
    rate = 0
    allowed = np.zeros(128, np.bool_)
    for d in dirs:
        d.rtcp += int(np.count_nonzero(rtcp & (ch == d.channel)))
        if d.sniff:  # no SDP says which payload types are this call's
            d.allowed = _unsignalled_types(rtp, np.flatnonzero(ok & (ch == d.channel)))
        allowed[:] = False
        allowed[list(d.allowed)] = True
        idx = np.flatnonzero(ok & (ch == d.channel) & allowed[rtp.pt])
        if not len(idx):
            continue
        pts = rtp.pt[idx]
        clock_of = np.zeros(128, np.int64)
        has_dec = np.zeros(128, np.bool_)
        # decoders made in the order their payload types first appear, as packets would
        kinds = present(pts, 128)
        first = sorted(kinds, key=lambda q: int(np.argmax(pts == q))) if len(kinds) > 1 \
            else kinds
        for pt in first:
            dec, clock = d.decoder(pt)
            if dec is not None:
                has_dec[pt], clock_of[pt] = True, clock
                rate = max(rate, dec.rate)
        no_dec = ~has_dec[pts]
        if no_dec.any():
            unknown = np.zeros(128, np.bool_)
            unknown[list(d.unknown)] = True
            d.unknown_packets += int(np.count_nonzero(unknown[pts[no_dec]]))
        idx = idx[~no_dec]
        if not len(idx):
            continue
        decodable[idx] = True
        if d.sniff:
            for j in idx[:SNIFF_PACKETS].tolist():
                o = int(media.off[j])
                sniff(d, media.data[o + int(rtp.start[j]):o + int(rtp.end[j])].tobytes())
        seg[idx], ext[idx] = _segment(d, media, rtp, idx, clock_of, origin)
    return Plan(rtp, ch, rtcp, decodable, seg, ext, rate, origin, unassigned)


def _unsignalled_types(r: RtpColumns, idx: I64) -> set[int]:
    """The payload types a direction without SDP plays: those carrying at least
    MIN_TYPE_SHARE of its packets, and RFC 4733 events (4-byte payloads of a dynamic type).
    A type seen on a stray packet or two is a damaged header, not a codec switch: decoded,
    it would set the recording's rate and play noise."""
    pts = r.pt[idx]
    counts = np.bincount(pts, minlength=128)
    keep = set(np.flatnonzero(counts >= max(1, MIN_TYPE_SHARE * len(idx))).tolist())
    size = r.end[idx] - r.start[idx]
    events = np.bincount(pts[(pts >= 96) & (size == 4)], minlength=128)
    keep.update(np.flatnonzero((events > 0) & (events == counts)).tolist())
    return keep - set(range(72, 77))


def _segment(d: Direction, media: MediaColumns, r: RtpColumns, idx: I64, clock_of: I64,
             origin: int) -> tuple[I64, I64]:
    """One direction's decodable packets through its segmenter, in capture order: each
    packet's (segment, extended timestamp); the direction's segments are built on the way."""
    pt = r.pt[idx]
    clock = clock_of[pt]
    ts = media.ts[idx]
    cap = (ts - origin) * clock // NS
    keys = ((r.ssrc[idx] << 16) | media.flow[idx]).tolist()
    clocks = clock.tolist()
    names = {q: d.decoder(q)[0].name for q in set(pt.tolist())}  # type: ignore[union-attr]
    whole = _one_mapping(d, keys, clocks, r.seq[idx], r.ts[idx], cap)
    if whole is not None:
        seg, ext = whole
    else:
        seqs, stamps, caps = r.seq[idx].tolist(), r.ts[idx].tolist(), cap.tolist()
        place = d.seg1.place
        out_seg = [0] * len(keys)
        out_ext = [0] * len(keys)
        for k in range(len(keys)):
            out_seg[k], out_ext[k] = place(keys[k], clocks[k], seqs[k], stamps[k], caps[k])
        seg = np.array(out_seg, np.int64)
        ext = np.array(out_ext, np.int64)
    _build_segments(d, seg, ext, cap - ext, ts, ssrc_of=r.ssrc[idx], clock=clock,
                    name_of=names, pt=pt)
    return seg, ext


def _one_mapping(d: Direction, keys: list[int], clocks: list[int], seq: I64, rts: I64,
                 cap: I64) -> tuple[I64, I64] | None:
    """The segmenter's answer on columns for the usual direction: one stream (SSRC and
    flow) at one clock, every packet newer than the one before, and no jump of the
    timestamp against capture time: one segment, timestamps extended by their wrapped
    differences. None for anything else (the segmenter then sees each packet)."""
    n = len(keys)
    if n < 2 or d.seg1.ssrc != -1 or keys.count(keys[0]) != n or clocks.count(clocks[0]) != n:
        return None
    clock = clocks[0]
    step = ((np.diff(rts) + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    newer = ((np.diff(seq) + 0x8000) & 0xFFFF) - 0x8000
    if not (newer > 0).all():
        return None
    ext = np.concatenate(([int(rts[0])], int(rts[0]) + np.cumsum(step)))
    transit = cap - ext
    if (np.abs(np.diff(transit)) > JUMP_SECONDS * clock).any():
        return None
    sg = d.seg1  # left as the segmenter would be after the last packet
    sg.ssrc, sg.clock, sg.index = keys[0], clock, 0
    sg._last, sg._ext, sg._seq = int(rts[-1]), int(ext[-1]), int(seq[-1])  # noqa: SLF001
    sg.ref = int(transit[-1])
    return np.zeros(n, np.int64), ext


def _build_segments(d: Direction, seg: I64, ext: I64, transit: I64, ts: I64, ssrc_of: I64,
                    clock: I64, name_of: dict[int, str], pt: I64) -> None:
    """The direction's segments from its packets' placements (capture order): what
    ``Segment`` and ``Segment.add`` one packet at a time give, on columns. A segment whose
    transit buckets outgrow MAX_BUCKETS (they widen as it goes) is built packet by packet."""
    placed = np.flatnonzero(seg >= 0)
    if not len(placed):
        return
    segments = d.segments
    s_idx = seg[placed]
    order = np.argsort(s_idx, kind="stable")  # by segment, capture order within
    bounds = np.flatnonzero(np.r_[True, s_idx[order][1:] != s_idx[order][:-1]])
    ends = np.r_[bounds[1:], len(order)]
    for a, b in zip(bounds.tolist(), ends.tolist(), strict=True):
        rows = placed[order[a:b]]
        j = int(rows[0])
        number = int(seg[j])
        e, t = ext[rows], transit[rows]
        if number != len(segments):  # continues a segment begun earlier (never, in one pass)
            for i in rows.tolist():
                segments[number].add(int(ext[i]), int(transit[i]), int(ts[i]))
            continue
        sg = Segment(int(ssrc_of[j]), int(clock[j]), int(t[0]), int(e[0]), int(ts[j]),
                     name_of[int(pt[j])])
        segments.append(sg)
        if len(rows) == 1:
            continue
        width = sg.width
        bucket = (e - sg.e0) // width
        uniq, _first, inverse = unique_inverse(bucket)
        if len(uniq) > MAX_BUCKETS:
            for i in rows[1:].tolist():
                sg.add(int(ext[i]), int(transit[i]), int(ts[i]))
            continue
        sg.min_transit = int(t.min())
        sg.min_ext = int(e.min())
        sg.max_ext = int(e.max())
        sg.last_ns = int(ts[rows[-1]])
        # per bucket, the first packet with its smallest transit (add replaces only on a
        # strictly smaller one)
        pick = np.lexsort((np.arange(len(rows)), t, inverse))
        winner = pick[np.r_[True, inverse[pick][1:] != inverse[pick][:-1]]]  # per bucket
        appear = np.full(len(uniq), len(rows), np.int64)
        np.minimum.at(appear, inverse, np.arange(len(rows)))
        # in the order buckets first appeared, as the dict one packet at a time holds them
        sg.buckets = {int(uniq[u]): (int(t[winner[u]]), int(e[winner[u]]))
                      for u in np.argsort(appear, kind="stable").tolist()}


def stream_stats(media: MediaColumns, p: Plan, dirs: tuple[Direction, Direction],
                 options: WriteOptions) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Count every stream (SSRC and flow) of both directions with ``add_batch``: returns
    which packets are duplicates, and which belong to streams past MAX_SSRCS (counted as
    such, never played)."""
    r = p.rtp
    n = len(media)
    dup = np.zeros(n, np.bool_)
    over = np.zeros(n, np.bool_)
    parsed = (p.ch >= 0) & ~p.rtcp & (r.error == 0)
    for d in dirs:
        idx = np.flatnonzero(parsed & (p.ch == d.channel))
        if not len(idx):
            continue
        pt = r.pt[idx]
        key = (r.ssrc[idx] << 16) | media.flow[idx]
        # the RTP clock each packet is counted with: a type SDP did not offer by its own
        # clock; RFC 4733 section 2.2.1: an event's packets keep its start timestamp, so
        # no jitter is measured on them
        clock_of = np.zeros(128, np.int64)
        for q in present(pt, 128):
            clock_of[q] = _info(d, q)[1] if q in d.allowed else packet_clock(q, d.rtpmap)
        uniq, first, inverse = unique_inverse(key)
        order = np.argsort(first, kind="stable")  # streams in order of first appearance
        for rank, u in enumerate(order.tolist()):
            sel = idx[inverse == u]
            if rank >= MAX_SSRCS:
                d.ssrc_overflow += len(sel)
                over[sel] = True
                continue
            k = int(uniq[u])
            st = StreamStats(k >> 16, resolve(int(r.pt[sel[0]]), d.rtpmap)[1] or 8000,
                             options.jitter_buffer())
            d.stats[k] = st
            d.first_index[k] = int(sel[0])
            spt = r.pt[sel]
            dup[sel] = st.add_batch(r.seq[sel], r.ts[sel], media.ts[sel], spt, r.marker[sel],
                                    clock_of[spt], media.length[sel])
    return dup, over


def _info(d: Direction, pt: int) -> tuple[Decoder | None, int, str]:
    """(decoder, RTP clock, name when there is no decoder) of an offered payload type; the
    clock is 0 for events (their timestamps stay at the event's start)."""
    dec, clock = d.decoder(pt)
    if dec is not None:
        return dec, clock, ""
    name, clock, _ = resolve(pt, d.rtpmap)
    return None, 0 if name in EVENTS else clock, name


def place_audio(media: MediaColumns, p: Plan, dup: npt.NDArray[np.bool_],
                over: npt.NDArray[np.bool_], dirs: tuple[Direction, Direction],
                window: StereoWindow | None, base: int, noise: np.random.Generator | None,
                pauses: list[tuple[int, int]]) -> None:
    """Decode and place every packet in capture order; RTCP read, events and comfort noise
    noted; counters per direction. Calls whose audio is all table-decoded (G.711) at the
    output rate, in clear and without comfort noise to synthesise, are placed on whole
    columns; any other takes the packet-by-packet path, with the same result."""
    if window is not None and noise is None and _columnar(p, dirs):
        _place_columns(media, p, dup, over, dirs, window, base, pauses)
    else:
        _place_each(media, p, dup, over, dirs, window, base, noise, pauses)


def _columnar(p: Plan, dirs: tuple[Direction, Direction]) -> bool:
    """Whether every decodable packet is table-decoded at the output rate, in clear."""
    for d in dirs:
        if d.secure or d.sdes is not None or d.user_keys:
            return False
        for pt in present(p.rtp.pt[p.decodable & (p.ch == d.channel)], 128):
            dec = d.decoders.get(pt)
            if dec is None or dec.name not in TABLES or dec.rate != p.rate:
                return False
    return True


def _no_decoder(d: Direction, pt: int, name: str, clock: int, ts: int, rtp_ts: int,
                body: bytes) -> str:
    """A payload without a decoder: an RFC 4733 event goes to the direction's events.
    Returns the payload's name (a 4-byte dynamic payload of a call without SDP is taken for
    an event)."""
    if not name and d.sniff and pt >= 96 and len(body) == 4:
        # No SDP to say so, but a 4-byte dynamic payload is an RFC 4733 event.
        name = "TELEPHONE-EVENT"
        d.unknown.pop(pt, None)
        d.control += 1
    if name == "TELEPHONE-EVENT":
        if d.events is None:
            d.events = TelephoneEvents(clock or 8000)
        d.events.feed(ts, rtp_ts, body)
    return name


def _place_each(media: MediaColumns, p: Plan, dup: npt.NDArray[np.bool_],
                over: npt.NDArray[np.bool_], dirs: tuple[Direction, Direction],
                window: StereoWindow | None, base: int, noise: np.random.Generator | None,
                pauses: list[tuple[int, int]]) -> None:
    """``place_audio`` one packet at a time."""
    r = p.rtp
    n = len(media)
    rate = p.rate
    ch_l, rtcp_l, err_l = p.ch.tolist(), p.rtcp.tolist(), r.error.tolist()
    pt_l, ssrc_l, rts_l = r.pt.tolist(), r.ssrc.tolist(), r.ts.tolist()
    start_l, end_l = r.start.tolist(), r.end.tolist()
    ts_l, dup_l, over_l = media.ts.tolist(), dup.tolist(), over.tolist()
    seg_l, ext_l = p.seg.tolist(), p.ext.tolist()
    info: tuple[dict[int, tuple[Decoder | None, int, str]], ...] = ({}, {})
    answer = [d.answer_ns for d in dirs]
    samples_at: dict[int, Int16Array] = {}
    chunk_end = 0
    for i in range(n):
        if i >= chunk_end:
            chunk_end = min(n, i + DECODE_CHUNK)
            samples_at = _table_decode(media, p, dup, dirs, i, chunk_end)
        c = ch_l[i]
        if c < 0:
            continue
        d = dirs[c]
        if rtcp_l[i]:
            if not d.secure:  # SRTCP report blocks are encrypted
                _rtcp(i, ts_l[i], media.payload(i), d, dirs[1 - c])
            continue
        e = err_l[i]
        if e:
            d.malformed[RTP_ERRORS[e]] += 1
            continue
        if over_l[i]:
            continue  # counted as ssrc_overflow
        pt = pt_l[i]
        if pt not in d.allowed:
            # a payload type SDP did not offer: counted in the stream, never played
            d.unexpected_pt += 1
            continue
        ts = ts_l[i]
        if not d.first_ns:
            d.first_ns = ts
        d.last_ns = ts
        if ts < answer[c]:
            d.early_packets += 1
        got = info[c].get(pt)
        if got is None:
            got = info[c][pt] = _info(d, pt)
        dec, clock, name = got
        if dec is None and name in CONTROL:
            d.control += 1
        if dup_l[i]:
            continue  # a duplicate: counted in its stream, never played
        if pauses and any(a <= ts < b for a, b in pauses):
            d.paused_packets += 1  # only its header was kept: counted, never played
            continue
        idx = seg_l[i]
        if dec is not None and idx < 0:
            d.late_packets += 1
            continue
        ssrc = ssrc_l[i]
        a, b = start_l[i], end_l[i]
        samples = samples_at.get(i)
        payload = b""
        if samples is None:
            payload = media.payload(i)
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
            name = _no_decoder(d, pt, name, clock, ts, rts_l[i], payload[a:b])
            if name == "CN" and noise is not None and b > a and d.audio_end >= 0:
                d.cn_level = payload[a]  # -dBov (RFC 3389 section 3)
            continue
        assert window is not None
        seg = d.segments[idx]
        ext = ext_l[i]
        pos = (ext + seg.floor(ext)) * rate // clock - seg.shift - base
        if samples is None:
            try:
                samples = dec.decode(payload[a:b])
            except Exception:  # noqa: BLE001 - hostile input costs that packet, not the call
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


def _table_decode(media: MediaColumns, p: Plan, dup: npt.NDArray[np.bool_],
                  dirs: tuple[Direction, Direction], lo: int, hi: int
                  ) -> dict[int, Int16Array]:
    """Samples of the G.711 packets in [lo, hi) that will be placed, decoded at once."""
    r = p.rtp
    out: dict[int, Int16Array] = {}
    sel = np.arange(lo, hi)
    sel = sel[p.decodable[lo:hi] & ~dup[lo:hi]]
    if not len(sel):
        return out
    for d in dirs:
        if d.secure or d.sdes is not None or d.user_keys:
            continue  # SRTP: decrypted packet by packet
        mine = sel[p.ch[sel] == d.channel]
        if not len(mine):
            continue
        pts = r.pt[mine]
        for q in present(pts, 128):
            dec = d.decoders.get(q)
            table = TABLES.get(dec.name) if dec is not None else None
            if table is None:
                continue
            idx = mine[pts == q]
            start = media.off[idx] + r.start[idx]
            lens = r.end[idx] - r.start[idx]
            total = int(lens.sum())
            if total == 0:
                for i in idx.tolist():
                    out[i] = np.zeros(0, np.int16)
                continue
            bounds = np.concatenate(([0], np.cumsum(lens)))
            gather = np.repeat(start - bounds[:-1], lens) + np.arange(total)
            samples = table[media.data[gather]]
            for k, i in enumerate(idx.tolist()):
                out[i] = samples[bounds[k]:bounds[k + 1]]
    return out


def _rtcp(at: int, ts: int, payload: bytes, sender: Direction, other: Direction) -> None:
    """What ``sender``'s RTCP (packet ``at``) says: its reports on the media it receives
    (``other``'s streams that had begun by then), and the round-trip time from LSR/DLSR
    against ``other``'s sender reports (RFC 3550 section 6.4.1), as the mirror saw them."""
    try:
        found = parse_rtcp(payload)
    except RtpError as exc:
        sender.malformed[f"RTCP: {exc}"] += 1
        return
    for ssrc, cname in found.cnames.items():
        if len(sender.cnames) < MAX_SSRCS or ssrc in sender.cnames:
            sender.cnames[ssrc] = cname
    for m in found.voip:
        if len(other.far_end_xr) < MAX_SSRCS or m.ssrc in other.far_end_xr:
            other.far_end_xr[m.ssrc] = m.to_json()
    for rep in found.reports:
        if rep.kind == SR:
            sender.sr_seen[(rep.ntp >> 16) & 0xFFFFFFFF] = ts
            while len(sender.sr_seen) > MAX_SR_REMEMBERED:
                del sender.sr_seen[next(iter(sender.sr_seen))]
        for about, fraction, cumulative, _ext, jitter, lsr, dlsr in rep.blocks:
            st = next((x for k, x in other.stats.items()
                       if x.ssrc == about and other.first_index[k] < at), None)
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


def _in_pauses(ts: I64, pauses: list[tuple[int, int]]) -> npt.NDArray[np.bool_]:
    inside = np.zeros(len(ts), np.bool_)
    for a, b in pauses:
        inside |= (ts >= a) & (ts < b)
    return inside


def _place_columns(media: MediaColumns, p: Plan, dup: npt.NDArray[np.bool_],
                   over: npt.NDArray[np.bool_], dirs: tuple[Direction, Direction],
                   window: StereoWindow, base: int, pauses: list[tuple[int, int]]) -> None:
    """``place_audio`` on columns: the counters by masks, the few packets that need a look
    of their own (RTCP, events) one by one, and the audio decoded by table and laid out
    block by block through the window's own rules."""
    r = p.rtp
    ts = media.ts
    live = (p.ch >= 0) & ~p.rtcp
    parsed = live & (r.error == 0)
    for d in dirs:
        counts = np.bincount(r.error[live & (p.ch == d.channel)], minlength=len(RTP_ERRORS))
        for e in np.flatnonzero(counts[1:]) + 1:  # 0: no error
            d.malformed[RTP_ERRORS[e]] += int(counts[e])
    counted = parsed & ~over
    allowed_pt = np.zeros((2, 128), np.bool_)
    control_pt = np.zeros((2, 128), np.bool_)
    decoder_pt = np.zeros((2, 128), np.bool_)
    for d in dirs:
        allowed_pt[d.channel, list(d.allowed)] = True
        for q in present(r.pt[counted & (p.ch == d.channel)], 128):
            if q in d.allowed:
                dec, _clock, name = _info(d, q)
                decoder_pt[d.channel, q] = dec is not None
                control_pt[d.channel, q] = dec is None and name in CONTROL
    ch = np.maximum(p.ch, 0)
    allowed = counted & allowed_pt[ch, r.pt]
    paused = _in_pauses(ts, pauses) if pauses else np.zeros(len(ts), np.bool_)
    has_dec = allowed & decoder_pt[ch, r.pt]
    fresh = allowed & ~dup & ~paused
    late = fresh & has_dec & (p.seg < 0)
    place = fresh & has_dec & (p.seg >= 0)
    special = (p.rtcp & (p.ch >= 0)) | (fresh & ~has_dec)
    for d in dirs:
        mine = p.ch == d.channel
        d.unexpected_pt += int(np.count_nonzero(counted & mine & ~allowed))
        a = np.flatnonzero(allowed & mine)
        if len(a):
            d.first_ns = d.first_ns or int(ts[a[0]])
            d.last_ns = int(ts[a[-1]])
            d.early_packets += int(np.count_nonzero(ts[a] < d.answer_ns))
        d.control += int(np.count_nonzero(allowed & mine & control_pt[ch, r.pt]))
        d.paused_packets += int(np.count_nonzero(allowed & mine & ~dup & paused))
        d.late_packets += int(np.count_nonzero(late & mine))
    for i in np.flatnonzero(special).tolist():
        d = dirs[int(p.ch[i])]
        if p.rtcp[i]:
            if not d.secure:  # SRTCP report blocks are encrypted
                _rtcp(i, int(ts[i]), media.payload(i), d, dirs[1 - d.channel])
            continue
        pt = int(r.pt[i])
        _dec, clock, name = _info(d, pt)
        body = media.payload(i)[int(r.start[i]):int(r.end[i])]
        _no_decoder(d, pt, name, clock, int(ts[i]), int(r.ts[i]), body)
    idx = np.flatnonzero(place)
    if not len(idx):
        return
    _lay_out(media, p, dirs, window, base, idx)


def _positions(p: Plan, dirs: tuple[Direction, Direction], idx: I64, base: int) -> I64:
    """Output frame of each packet: its extended timestamp plus its segment's transit floor
    there (``Segment.floor``), in output samples."""
    pos = np.zeros(len(idx), np.int64)
    chans = p.ch[idx]
    segs = p.seg[idx]
    ext = p.ext[idx]
    for d in dirs:
        mine = np.flatnonzero(chans == d.channel)
        if not len(mine):
            continue
        sa = np.array([s.a for s in d.segments])
        sb = np.array([s.b for s in d.segments])
        se0 = np.array([s.e0 for s in d.segments], np.int64)
        shift = np.array([s.shift for s in d.segments], np.int64)
        clock = np.array([s.clock for s in d.segments], np.int64)
        k = segs[mine]
        e = ext[mine]
        floor = np.rint(sa[k] + sb[k] * (e - se0[k]).astype(np.float64)).astype(np.int64)
        pos[mine] = (e + floor) * p.rate // clock[k] - shift[k] - base
    return pos


def late_cuts(pos: I64, m: I64, wbase: int, high: int, size: int) -> tuple[I64, int]:
    """``StereoWindow.put``'s rules over packets of ``m`` samples at frames ``pos``, in
    order, from a window at base ``wbase`` whose furthest sample is ``high``: how many
    leading samples of each arrive after their place was written, and the new ``high``.
    The base moves only where a packet ends past base + size, and every end before that
    point lies within it, so the next move is where the running maximum of the ends first
    passes base + size: a search per move instead of a step per packet. (A packet's end
    does not move when its late head is cut.)"""
    ends = pos + m
    reach = np.maximum.accumulate(ends) if len(ends) else ends
    base_at = np.empty(len(pos), np.int64)
    k = 0
    while k < len(pos):
        j = int(np.searchsorted(reach, wbase + size, "right"))
        base_at[k:j + 1] = wbase  # packet j is cut against the base before its move
        if j >= len(pos):
            break
        at = max(int(pos[j]), wbase)  # where its head lands after any late cut
        wbase = max(wbase, int(ends[j]) - size, min(wbase + size // 2, at))
        k = j + 1
    if len(pos):
        high = max(high, int(reach[-1]))
    return np.clip(base_at - pos, 0, m), high


def _lay_out(media: MediaColumns, p: Plan, dirs: tuple[Direction, Direction],
             window: StereoWindow, base: int, idx: I64) -> None:
    """Place the packets ``idx`` (capture order) as ``StereoWindow.put`` one after another
    would: the window's base is followed packet by packet (integers only) to find what
    arrived too late; then each block of output is filled at once, packets that overlap
    another written in capture order so the later one wins."""
    r = p.rtp
    pos = _positions(p, dirs, idx, base)
    n = r.end[idx] - r.start[idx]
    chan = p.ch[idx]
    size = window.size
    # the window's rules (StereoWindow.put, _advance) on integers: how much of each packet
    # arrived after its place was written
    wbase, high = window._base, window._high  # noqa: SLF001 - continued exactly
    cut, high = late_cuts(pos, np.minimum(n, size), wbase, high, size)
    window.late_samples[0] += int(cut[chan == 0].sum())
    window.late_samples[1] += int(cut[chan == 1].sum())
    # per direction: silence filled between packets, packets per segment, where audio ends
    for d in dirs:
        mine = np.flatnonzero(chan == d.channel)
        if not len(mine):
            continue
        pm, nm = pos[mine], n[mine]
        before = np.empty(len(mine), np.int64)
        before[0] = d.audio_end
        before[1:] = np.maximum(np.maximum.accumulate(pm + nm)[:-1], d.audio_end)
        gap = np.where((before >= 0) & (before < pm), pm - before, 0)
        segs = p.seg[idx[mine]]
        gaps = np.bincount(segs, weights=gap, minlength=len(d.segments))
        packets = np.bincount(segs, minlength=len(d.segments))
        for k in np.flatnonzero(packets).tolist():
            d.segments[k].packets += int(packets[k])
            d.segments[k].gap_samples += int(gaps[k])
        d.audio_end = max(d.audio_end, int((pm + nm).max()))
        d.placed += len(mine)
        names = {dec.name for q, dec in d.decoders.items() if dec is not None
                 and q in set(r.pt[idx[mine]].tolist())}
        d.codecs_used |= names
    # the audio, block by block of the timeline
    held = np.minimum(n, size)  # the window holds no more of one packet
    start = pos + cut
    keep = cut < held
    src = media.off[idx] + r.start[idx] + cut
    length = held - cut
    start, src, length, chan2 = start[keep], src[keep], length[keep], chan[keep]
    pts = r.pt[idx][keep]
    law = np.zeros(len(pts), np.int64)  # 0: mu-law, 1: A-law
    for d in dirs:
        for q, dec in d.decoders.items():
            if dec is not None and dec.name == "PCMA/8000":
                law[(chan2 == d.channel) & (pts == q)] = 1
    window.fill(start, src, length, chan2, law, media.data, high)
