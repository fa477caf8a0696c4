"""Two B2BUA legs written as one recording: one call made of both (the A-leg's dialog and
caller, the B-leg's callee and its media after the A-leg's), and their media as one set of
columns. Each stream then has a copy on each leg, which the writer's hop choice handles as
it does a relay's (the copy nearest the talker is recorded)."""

from __future__ import annotations

import copy

import numpy as np

from correlate.call import Call, MediaOffer
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
    m.sip_log = list(a.sip_log)
    m.sip_dtmf = list(a.sip_dtmf)
    m.headers = dict(a.headers)
    for leg in legs:
        m.flows += leg.flows
        m.offers[0].extend(leg.offers[0])
        m.offers[1].extend(_tagged(o, a.callee_tag) for o in leg.offers[1]
                           if not o.tag or o.tag == leg.callee_tag)
        m.sip_log += leg.sip_log
        m.sip_dtmf += leg.sip_dtmf
        for name, values in leg.headers.items():
            m.headers.setdefault(name, values)
        m.end_ns = max(m.end_ns, leg.end_ns)
        m.last_ns = max(m.last_ns, leg.last_ns)
        m.sip_messages += leg.sip_messages
        m.retransmissions += leg.retransmissions
    m.sip_log.sort(key=lambda x: x[0])
    m.sip_dtmf.sort(key=lambda x: x[0])
    return m


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
