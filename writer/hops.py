"""Relayed media: one stream seen on two hops of one call, as a mirror port at a SIP proxy
with a media relay (or an SBC that keeps the Call-ID) sees it: the talker's phone to the
relay, and the relay to the listener. Both copies are flows of the same channel, in the
air at the same time; mixed, the recording jumps between them packet by packet. One copy
per direction is recorded; the others are counted on their own (per-hop figures).
"""

from __future__ import annotations

import numpy as np

from correlate.call import Call
from writer.columns import MediaColumns

NEAREST_SENDER, NEAREST_RECEIVER = "nearest-sender", "nearest-receiver"
RELAY_HOPS = (NEAREST_SENDER, NEAREST_RECEIVER)
OTHER_HOP = -2
"""The channel of a flow that carries another hop's copy of a recorded stream."""
# A flow needs this many packets to count as a hop (half a second of 20 ms packets): a
# stray packet or two on an old port is not a copy of the stream.
MIN_HOP_PACKETS = 25
# Two flows of one channel are copies of one stream when they are in the air together for
# at least this share of the shorter one (a re-INVITE to a new port follows the old flow,
# it does not overlap it).
MIN_OVERLAP = 0.5
RTCP_KIND = 1


def _first_offer_ip(call: Call, side: int) -> bytes | None:
    offers = [o for o in call.offers[side] if o.addr]
    if not offers:
        return None
    return min(offers, key=lambda o: o.time_ns).addr


def choose_hops(call: Call, channels: list[int], media: MediaColumns,
                mode: str = NEAREST_SENDER) -> list[int]:
    """``channels`` with every copy but one of each relayed stream set to OTHER_HOP. The
    copy kept: ``nearest-sender``, the one leaving the talker (its source is the address
    the talker's side announced first: the talker's own SDP is the first seen of its
    side, a relay's rewrite comes after it), else the one seen first; ``nearest-receiver``
    the one arriving at the listener, else the one seen last."""
    n = len(call.flows)
    if n < 2 or not len(media):
        return channels
    flow = np.minimum(media.flow, n)
    counts = np.bincount(flow, minlength=n + 1)[:n]
    first = np.full(n + 1, np.iinfo(np.int64).max, np.int64)
    last = np.full(n + 1, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(first, flow, media.ts)
    np.maximum.at(last, flow, media.ts)
    out = list(channels)
    for c in (0, 1):
        cand = [j for j in range(n) if channels[j] == c and call.flows[j][4] != RTCP_KIND
                and counts[j] >= MIN_HOP_PACKETS]
        for group in _overlapping(cand, first, last):
            if len(group) < 2:
                continue
            keep = _pick(call, group, c, mode, first)
            for j in group:
                if j != keep:
                    out[j] = OTHER_HOP
    # the RTCP of a hop goes with it: same pair of hosts as an other-hop flow
    other_hosts = {(call.flows[j][0][0], call.flows[j][1][0]) for j in range(n)
                   if out[j] == OTHER_HOP}
    kept_hosts = {(call.flows[j][0][0], call.flows[j][1][0]) for j in range(n)
                  if out[j] >= 0 and call.flows[j][4] != RTCP_KIND}
    for j, f in enumerate(call.flows):
        pair = (f[0][0], f[1][0])
        if f[4] == RTCP_KIND and out[j] >= 0 and pair in other_hosts and pair not in kept_hosts:
            out[j] = OTHER_HOP
    return out


def _overlapping(cand: list[int], first: np.ndarray, last: np.ndarray) -> list[list[int]]:
    """Groups of flows in the air together (connected by pairwise overlap)."""
    parent = {j: j for j in cand}

    def root(j: int) -> int:
        while parent[j] != j:
            j = parent[j]
        return j

    for a_i, a in enumerate(cand):
        for b in cand[a_i + 1:]:
            lo, hi = max(first[a], first[b]), min(last[a], last[b])
            shorter = min(last[a] - first[a], last[b] - first[b])
            if hi > lo and hi - lo >= MIN_OVERLAP * max(shorter, 1):
                parent[root(b)] = root(a)
    groups: dict[int, list[int]] = {}
    for j in cand:
        groups.setdefault(root(j), []).append(j)
    return list(groups.values())


def _pick(call: Call, group: list[int], channel: int, mode: str, first: np.ndarray) -> int:
    if mode == NEAREST_RECEIVER:
        ip = _first_offer_ip(call, 1 - channel)
        match = [j for j in group if ip is not None and call.flows[j][1][0] == ip]
        return match[0] if len(match) == 1 else max(group, key=lambda j: int(first[j]))
    ip = _first_offer_ip(call, channel)
    match = [j for j in group if ip is not None and call.flows[j][0][0] == ip]
    return match[0] if len(match) == 1 else min(group, key=lambda j: int(first[j]))
