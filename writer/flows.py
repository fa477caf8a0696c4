"""Which party sent each media flow of a call.

Decided once the call is over, from all its flows, so the order in which flows appeared
does not matter. RFC 3264 section 5.1: an SDP names where its author *receives*, so a flow
sent to a party's announced address was sent by the other party; that flow's source is then
the sender's real address (NAT, media gateways). A flow to such a learned address was sent
by the other party too. Only then does the source address decide (symmetric RTP), and only
for a source that sends nowhere announced: an announced source that already sends to an
announced address and also to somewhere else (UDPTL after a T.38 re-INVITE, a new port
not yet signalled) is not this call's audio.
"""

from __future__ import annotations

from correlate.call import Endpoint, Flow

UNKNOWN = -1


def assign_channels(flows: list[Flow], excluded: frozenset[Endpoint] = frozenset()
                    ) -> list[int]:
    """Channel (0 = caller sent it, 1 = callee sent it, -1 unknown) of every flow; flows to
    or from ``excluded`` endpoints (a forked branch that did not answer) are not recorded."""
    channels = [UNKNOWN] * len(flows)
    learned: dict[Endpoint, int] = {}
    for i, (src, dst, d_side, _s_side, _kind) in enumerate(flows):
        if src in excluded or dst in excluded:
            continue
        if d_side >= 0:
            channels[i] = 1 - d_side
            learned.setdefault(src, 1 - d_side)
    senders = {f[0] for f in flows if f[2] >= 0}
    for i, (src, dst, d_side, s_side, _kind) in enumerate(flows):
        if d_side >= 0 or src in excluded or dst in excluded:
            continue
        side = learned.get(dst)
        if side is not None:
            channels[i] = 1 - side
        elif s_side >= 0 and src not in senders:
            channels[i] = s_side
    return channels
