"""`calltap stats`: per-call and per-stream RTP statistics without writing audio, fast.

The RTP bulk never goes through the per-packet path. The file is indexed and the common
IPv4/UDP layout decoded for all packets at once (capture.vector). Signalling, everything
the batch decoder does not take, and a sample of each RTP flow (its first packets, then one
per second of capture time) go through the importer's own correlation, so calls, their
media and unsignalled RTP are found exactly as import finds them. Every other packet of a
flow belongs to the call its latest sample went to. Each stream's packets are then counted
by the writer's StreamStats in one batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from calltap.config import Config
from calltap.importer import settings_from
from calltap.policyfile import load_policy
from capture.index import PacketIndex, index_capture
from capture.vector import UdpBatch, decode_udp, rtp_fields, rtp_like
from correlate.call import SIDE_NAMES, Call, Endpoint
from correlate.events import CallEnded
from correlate.policy import Policy
from correlate.recorder import Recorder
from writer.direction import losing_branches
from writer.errors import RtpError
from writer.flows import assign_channels
from writer.mos import mos, r_factor
from writer.options import WriteOptions
from writer.rtp import parse_rtp
from writer.stats import StreamStats, packet_clock
from writer.summary import call_json, flow_label

I64 = npt.NDArray[np.int64]
Stream = tuple[int, int, int, tuple[I64, ...]]
"""(call serial, flow index, SSRC, (sequence, timestamp, capture ns, payload type, marker,
bytes) per packet in capture order)."""
NS = 1_000_000_000
# Packets of each RTP flow the correlator sees in full: enough to promote unsignalled RTP
# (the importer needs 5 in a row) and to learn where the flow belongs.
FIRST_FED = 8
# After those, one packet per this much capture time keeps the correlator's view of the flow
# (inactivity timers, an address reused by a later call) current.
SAMPLE_NS = NS


class _Sampler:
    """Feeds the Recorder only the chosen packets, and is its media sink: it notes which
    call and flow each media packet it was fed went to."""

    def __init__(self, index: PacketIndex, feed: I64, batch_flows: set[int]) -> None:
        self.index = index
        self.feed = feed
        self.batch_flows = batch_flows
        self.calls: list[Call] = []
        """Finished calls worth reporting, in the order they ended."""
        self.owner: dict[tuple[int, int], tuple[int, int]] = {}
        """(flow code, packet time) -> (call serial, flow index) of sampled batch packets."""
        self.slow: dict[tuple[int, int], list[tuple[int, bytes]]] = {}
        """(call serial, flow index) -> packets of flows the batch decoder did not take."""

    def __iter__(self) -> Iterator[tuple[int, int, bytes]]:
        index = self.index
        ts, link = index.ts_ns, index.link
        for i in self.feed.tolist():
            yield int(ts[i]), int(link[i]), index.frame(i)

    def add(self, call: Call, ts_ns: int, flow: int, payload: bytes) -> None:
        f = call.flows[flow]
        code = _flow_code(f[0], f[1])
        if code in self.batch_flows:
            self.owner[(code, ts_ns)] = (call.serial, flow)
        else:
            self.slow.setdefault((call.serial, flow), []).append((ts_ns, payload))

    def take(self, events: list[Any]) -> None:
        """Calls that ended: every one with an answer or media, whatever the policy says
        about recording it (it decides recording, not what is analysed)."""
        for ev in events:
            if isinstance(ev, CallEnded) and (ev.call.responded or ev.call.flows):
                self.calls.append(ev.call)


def _flow_code(src: Endpoint, dst: Endpoint) -> int:
    """One integer per UDP 5-tuple; the batch decoder's flows are IPv4, others never match."""
    if len(src[0]) != 4 or len(dst[0]) != 4:
        return -1
    return (int.from_bytes(src[0], "big") << 64 | src[1] << 48
            | int.from_bytes(dst[0], "big") << 16 | dst[1])


def analyse(path: str, cfg: Config, options: WriteOptions
            ) -> tuple[list[dict[str, Any]], dict[str, int], str]:
    """Calls of one capture file with per-stream statistics, the packets not used by
    reason, and a warning ("" if none). Raises CaptureError naming the file."""
    index = index_capture(path)
    try:
        return _analyse(index, cfg, options)
    finally:
        index.close()


def calls_in(path: str, cfg: Config) -> list[Call]:
    """The calls of a capture file as import correlates them (with the configured policy's
    decisions), without counting or writing anything; raises CaptureError."""
    index = index_capture(path)
    try:
        return _correlate(index, cfg)[0].calls
    finally:
        index.close()


class _Flows:
    """The batch decoder's RTP-like packets grouped by flow, and which were sampled."""

    def __init__(self, udp: UdpBatch, by_flow: I64, flow_sorted: I64, uniq: list[int],
                 fed_sorted: npt.NDArray[np.bool_]) -> None:
        self.udp, self.by_flow, self.flow_sorted = udp, by_flow, flow_sorted
        self.uniq, self.fed_sorted = uniq, fed_sorted


def _correlate(index: PacketIndex, cfg: Config) -> tuple[_Sampler, Recorder, _Flows]:
    """Import's correlation over the signalling and a sample of each RTP flow."""
    n = len(index)
    udp = decode_udp(index)
    rtp = np.nonzero(rtp_like(index, udp))[0]
    # group the RTP-like packets by flow, capture order within each
    src = udp.src[rtp] << 16 | udp.sport[rtp]
    dst = udp.dst[rtp] << 16 | udp.dport[rtp]
    order = np.lexsort((rtp, dst, src))
    by_flow = rtp[order]
    src, dst = src[order], dst[order]
    first = np.ones(len(order), np.bool_)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    flow_sorted = np.cumsum(first) - 1
    starts = np.nonzero(first)[0]
    uniq = [a << 48 | b for a, b in zip(src[starts].tolist(), dst[starts].tolist(),
                                        strict=True)]
    rank = np.arange(len(order)) - starts[flow_sorted]
    bucket = index.ts_ns[by_flow] // SAMPLE_NS
    new_bucket = first.copy()
    new_bucket[1:] |= bucket[1:] != bucket[:-1]
    fed_sorted = (rank < FIRST_FED) | new_bucket
    others = np.ones(n, np.bool_)
    others[rtp] = False
    feed = np.sort(np.concatenate((np.nonzero(others)[0], by_flow[fed_sorted])))
    batch_flows = set(uniq)
    sampler = _Sampler(index, feed, batch_flows)
    policy = load_policy(cfg.policy) if cfg.policy else Policy()
    rec = Recorder(settings_from(replace(cfg, dedup_window=0.0)), policy, sampler,
                   os.path.basename(index.name))
    rec.feed(sampler)  # the same correlation as import, on the sample
    sampler.take(rec.events())
    if rec.packets:
        rec.check_calls(rec.clock)
    rec.finish()
    sampler.take(rec.events())
    return sampler, rec, _Flows(udp, by_flow, flow_sorted, uniq, fed_sorted)


def _analyse(index: PacketIndex, cfg: Config, options: WriteOptions
             ) -> tuple[list[dict[str, Any]], dict[str, int], str]:
    sampler, rec, flows = _correlate(index, replace(cfg, policy=""))
    udp, by_flow, flow_sorted, uniq, fed_sorted = flows.udp, flows.by_flow, \
        flows.flow_sorted, flows.uniq, flows.fed_sorted
    drops = {k: v for k, v in rec.all_drops().items()
             if k not in ("udp_not_sip_or_known_media", "unanswered_invite_not_recorded")}
    # every packet of a batch flow belongs where the latest sample of that flow went
    sample_pos = np.nonzero(fed_sorted)[0]
    s_serial = np.full(len(sample_pos), -1, np.int64)
    s_flow = np.zeros(len(sample_pos), np.int64)
    fs, ts_list = flow_sorted[sample_pos].tolist(), index.ts_ns[by_flow[sample_pos]].tolist()
    for k, (f, t) in enumerate(zip(fs, ts_list, strict=True)):
        got = sampler.owner.get((uniq[f], t))
        if got is not None:
            s_serial[k], s_flow[k] = got
    latest = np.cumsum(fed_sorted) - 1
    owner_serial = s_serial[latest]
    owner_flow = s_flow[latest]
    calls = {c.serial: c for c in sampler.calls}
    # the streams: (call, flow, SSRC), packets in capture order
    mine = owner_serial >= 0
    pkt = by_flow[mine]
    serial, flow = owner_serial[mine], owner_flow[mine]
    pt, marker, seq, rts, ssrc = rtp_fields(index, udp.payload[pkt])
    o = np.lexsort((pkt, ssrc, flow, serial))
    cols = [a[o] for a in (serial, flow, ssrc, seq, rts, index.ts_ns[pkt], pt, marker,
                           udp.size[pkt])]
    streams: list[Stream] = []
    if len(o):
        change = np.zeros(len(o), np.bool_)
        change[0] = True
        for c in cols[:3]:
            change[1:] |= c[1:] != c[:-1]
        bounds = np.append(np.nonzero(change)[0], len(o)).tolist()
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            streams.append((int(cols[0][a]), int(cols[1][a]), int(cols[2][a]),
                            tuple(c[a:b] for c in cols[3:])))
    for (sr, fl), packets in sampler.slow.items():
        by_ssrc: dict[int, list[list[int]]] = {}
        for t, payload in packets:
            try:
                p_t, m, sq, rt, ss, _a, _b = parse_rtp(payload)
            except RtpError:
                continue
            c = by_ssrc.setdefault(ss, [[], [], [], [], [], []])
            for lst, v in zip(c, (sq, rt, t, p_t, m, len(payload)), strict=True):
                lst.append(v)
        streams += [(sr, fl, ss, tuple(np.array(x, np.int64) for x in c))
                    for ss, c in by_ssrc.items()]
    results = _count_all(streams, calls, options)
    report = [_call_report(c, results.get(c.serial, [])) for c in
              sorted(calls.values(), key=lambda c: c.start_ns)]
    warning = index.error or (f"{index.name}: capture ends mid-packet; packets before the cut "
                              "were analysed" if index.truncated else "")
    return report, drops, warning


def _count(ssrc: int, rtpmap: dict[int, tuple[str, int, int]], options: WriteOptions,
           cols: tuple[I64, ...]) -> dict[str, Any]:
    """One stream's statistics, exactly as the writer counts them."""
    seqs, stamps, times, pts, markers, sizes = cols
    clocks = {p: packet_clock(p, rtpmap) for p in np.unique(pts).tolist()}
    table = np.zeros(128, np.int64)
    for p, c in clocks.items():
        table[p & 0x7F] = c
    st = StreamStats(ssrc, clocks[int(pts[0])] or 8000, options.jitter_buffer())
    st.add_batch(seqs, stamps, times, pts, markers, table[pts & 0x7F], sizes)
    out = st.to_json()
    codecs = sorted({f"{rtpmap[p][0]}/{rtpmap[p][1]}" for p in clocks if p in rtpmap})
    out["codecs"] = codecs
    heard = st.lost + st.jb.discards
    if st.expected and codecs:
        r = r_factor(codecs[0], min(100.0, heard * 100.0 / st.expected), st.jb.mean_depth_ms)
        out["mos"] = round(mos(r), 2)
    else:
        out["mos"] = None
    return out


def _count_all(streams: list[Stream], calls: dict[int, Call], options: WriteOptions
               ) -> dict[int, list[dict[str, Any]]]:
    """Statistics of every stream on a recorded channel, by call serial."""
    channels = {s: assign_channels(c.flows, losing_branches(c)) for s, c in calls.items()}
    work = []
    for serial, flow, ssrc, cols in streams:
        call = calls.get(serial)
        if call is None or call.flows[flow][4] or channels[serial][flow] < 0:
            continue  # RTCP, or a flow the writer would not record
        work.append((serial, flow, ssrc, call.codec_map(channels[serial][flow]), cols))
    counted = [_count(w[2], w[3], options, w[4]) for w in work]
    out: dict[int, list[dict[str, Any]]] = {}
    for (serial, flow, _ssrc, _m, _c), stats in zip(work, counted, strict=True):
        call = calls[serial]
        stats["side"] = SIDE_NAMES[channels[serial][flow]]
        stats["flow"] = flow_label(call.flows[flow])
        out.setdefault(serial, []).append(stats)
    return out


def _call_report(call: Call, streams: list[dict[str, Any]]) -> dict[str, Any]:
    out = call_json(call)
    out.pop("media", None)
    out["streams"] = sorted(streams, key=lambda s: (s["side"] != "caller", s["flow"]))
    return out


def format_table(calls: list[dict[str, Any]]) -> str:
    """The terminal view: a line per call, an indented line per stream."""
    head = ("side", "flow", "ssrc", "codec", "pkts", "lost", "max Δ ms", "mean jit",
            "max jit", "mos")
    lines = []
    for c in calls:
        lines.append(f"{c['start'][:19].replace('T', ' ')}  {c['caller']} -> {c['callee']}  "
                     f"{c['status']}  {c['duration']:.1f}s  {c['call_id']}")
        rows = [head]
        for s in c["streams"]:
            lost_pct = s["lost"] * 100 / s["expected"] if s["expected"] else 0.0
            rows.append((s["side"], s["flow"], s["ssrc"], ",".join(s["codecs"]) or "-",
                         str(s["received"]), f"{s['lost']} ({lost_pct:.1f}%)",
                         f"{s['delta_ms']['max']:.3f}", f"{s['jitter_ms']['mean']:.3f}",
                         f"{s['jitter_ms']['max']:.3f}",
                         "-" if s["mos"] is None else f"{s['mos']:.2f}"))
        if len(rows) == 1:
            lines.append("    (no RTP)")
            continue
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for r in rows:
            lines.append("    " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)
                                           ).rstrip())
    return "\n".join(lines)
