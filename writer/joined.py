"""Two B2BUA legs written as one recording: one call made of both (the A-leg's dialog and
caller, the B-leg's callee and its media after the A-leg's), and their media as one set of
columns. Each stream then has a copy on each leg, which the writer's hop choice handles as
it does a relay's (the copy nearest the talker is recorded)."""

from __future__ import annotations

import copy

import numpy as np

from correlate.call import Call, MediaOffer, SipEntry, pack_sip, sip_entries
from writer.columns import MediaColumns


def joined_call(a: Call, legs: tuple[Call, ...]) -> Call:
    """The conversation as one call: ``a``'s dialog, parties from the first and last leg
    (caller of the A-leg, callee of the B-leg), every leg's flows (``a``'s first, so flow
    numbers of a leg's media are offset by the flows before it), offers, SIP messages,
    DTMF and pauses."""
    m = copy.copy(a)
    last = legs[-1]
    # the A-leg's dialog (its tags name it in the metadata), the B-leg's callee
    m.callee_uri, m.callee_name = last.callee_uri, last.callee_name
    m.callee_signal = last.callee_signal
    m.flows = list(a.flows)
    # each leg's answer carries its own To-tag: none of them is a losing forked branch
    m.offers = (list(a.offers[0]), [_tagged(o, a.callee_tag) for o in a.offers[1]
                                    if not o.tag or o.tag == a.callee_tag])
    log = list(sip_entries(a.sip_log))
    m.sip_dtmf = list(a.sip_dtmf)
    m.headers = dict(a.headers)
    for leg in legs:
        m.flows += leg.flows
        m.offers[0].extend(leg.offers[0])
        m.offers[1].extend(_tagged(o, a.callee_tag) for o in leg.offers[1]
                           if not o.tag or o.tag == leg.callee_tag)
        log += sip_entries(leg.sip_log)
        m.sip_dtmf += leg.sip_dtmf
        for name, values in leg.headers.items():
            m.headers.setdefault(name, values)
        m.end_ns = max(m.end_ns, leg.end_ns)
        m.last_ns = max(m.last_ns, leg.last_ns)
        m.sip_messages += leg.sip_messages
        m.retransmissions += leg.retransmissions
    log.sort(key=lambda x: x[0])
    m.sip_log = [pack_sip(*e) for e in log]
    m.sip_dtmf.sort(key=lambda x: x[0])
    return m


# Two copies of one SIP message (the same bytes between the same ends) closer than this
# were seen by two capture processes or probes, not sent twice: a retransmission comes
# T1 = 500 ms later at the earliest (RFC 3261 section 17.1.1.2).
SAME_MESSAGE_NS = 100_000_000


def merged_call(main: Call, parts: list[Call]) -> Call:
    """One call of the views several capture processes or probes had of it: ``main``'s
    dialog, every view's flows (``main``'s first, then each part's in turn, as
    ``join_media`` numbers them), and SIP messages and digits seen anywhere, each once."""
    m = copy.copy(main)
    m.flows = list(main.flows)
    m.offers = (list(main.offers[0]), list(main.offers[1]))
    log = list(sip_entries(main.sip_log))
    dtmf = list(main.sip_dtmf)
    for p in parts:
        m.flows += p.flows
        for side in (0, 1):
            if not m.offers[side] and not p.remote:
                m.offers[side].extend(p.offers[side])
        log += sip_entries(p.sip_log)
        dtmf += [d for d in p.sip_dtmf if d not in dtmf]
        m.last_ns = max(m.last_ns, p.last_ns)
        m.end_ns = max(m.end_ns, p.end_ns)
        if not m.answer_ns and p.answer_ns:
            m.answer_ns = p.answer_ns
        if p.video_span[1]:
            first = min(x for x in (m.video_span[0], p.video_span[0]) if x) \
                if m.video_span[0] else p.video_span[0]
            m.video_span = (first, max(m.video_span[1], p.video_span[1]))
    log.sort(key=lambda x: x[0])
    kept: list[SipEntry] = []
    last: dict[tuple[bytes, int, bytes, int, bytes], int] = {}
    for entry in log:
        key = entry[1:]
        t = last.get(key)
        if t is not None and entry[0] - t < SAME_MESSAGE_NS:
            continue
        last[key] = entry[0]
        kept.append(entry)
    m.sip_messages += len(kept) - len(main.sip_log)
    m.sip_log = [pack_sip(*e) for e in kept]
    m.sip_dtmf = sorted(dtmf, key=lambda x: x[0])
    return m


def first_packet_order(call: Call, media: MediaColumns) -> MediaColumns:
    """Renumber ``call``'s flows in the order of their first packet, as one process seeing
    every packet numbers them (flows without a packet last, in their order)."""
    n = len(call.flows)
    if not n:
        return media
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    inside = media.flow < n
    np.minimum.at(first, media.flow[inside], media.ts[inside])
    order = np.argsort(first, kind="stable")
    if (order == np.arange(n)).all():
        return media
    new = np.empty(n + 1, np.int64)
    new[order] = np.arange(n)
    new[n] = n
    call.flows = [call.flows[i] for i in order.tolist()]
    call.flow_ids = {pair: int(new[i]) if 0 <= i < n else i
                     for pair, i in call.flow_ids.items()}
    flow = new[np.minimum(media.flow, n)]
    return MediaColumns(media.ts, np.where(media.flow < n, flow, media.flow), media.off,
                        media.length, media.data)


def _tagged(offer: MediaOffer, tag: str) -> MediaOffer:
    o = copy.copy(offer)
    o.tag = tag
    return o


def join_media(parts: list[MediaColumns], flow_offsets: list[int]) -> MediaColumns:
    """The legs' media as one set of columns in capture order, each leg's flow numbers
    moved past the flows of the legs before it."""
    if all(_same_buffer(p.data, parts[0].data) for p in parts):
        # the legs' payloads are places in one mapped capture: no copy
        base = np.zeros(len(parts), np.int64)
        data = parts[0].data
    else:
        sizes = [len(p.data) for p in parts]
        base = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        data = np.concatenate([np.asarray(p.data) for p in parts])
    ts = np.concatenate([p.ts for p in parts])
    flow = np.concatenate([p.flow + k for p, k in zip(parts, flow_offsets, strict=True)])
    off = np.concatenate([p.off + b for p, b in zip(parts, base.tolist(), strict=True)])
    length = np.concatenate([p.length for p in parts])
    order = np.argsort(ts, kind="stable")
    return MediaColumns(ts[order], flow[order], off[order], length[order], data)


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(len(a) == len(b) and a.__array_interface__["data"][0]
                == b.__array_interface__["data"][0])
