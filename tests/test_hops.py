"""Which copy of a relayed stream is recorded, on hand-made flows."""

from __future__ import annotations

import numpy as np

from correlate.call import Call, MediaOffer
from writer.columns import MediaColumns
from writer.hops import MIN_HOP_PACKETS, NEAREST_RECEIVER, NEAREST_SENDER, OTHER_HOP, choose_hops

A, B, R = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1]), bytes([203, 0, 113, 1])
MS = 1_000_000


def _call(flows: list[tuple[tuple[bytes, int], tuple[bytes, int], int, int, int]]) -> Call:
    c = Call("k", "cid", 0)
    c.flows = list(flows)
    c.offers = ([MediaOffer(A, 16000, {}, ["0"], "sendrecv", 0, 1 * MS),
                 MediaOffer(R, 40002, {}, ["0"], "sendrecv", 0, 2 * MS)],
                [MediaOffer(B, 26000, {}, ["0"], "sendrecv", 0, 3 * MS),
                 MediaOffer(R, 40000, {}, ["0"], "sendrecv", 0, 4 * MS)])
    return c


def _media(spans: list[tuple[int, int, int]]) -> MediaColumns:
    """Packets every 20 ms for each (flow, first ms, count)."""
    ts, flow = [], []
    for f, start, count in spans:
        ts += [(start + 20 * k) * MS for k in range(count)]
        flow += [f] * count
    order = np.argsort(ts, kind="stable")
    z = np.zeros(len(ts), np.int64)
    return MediaColumns(np.array(ts, np.int64)[order], np.array(flow, np.int64)[order], z, z,
                        np.zeros(0, np.uint8))


RELAYED = [((A, 16000), (R, 40000), 1, 0, 0), ((R, 40002), (B, 26000), 1, 0, 0),
           ((B, 26000), (R, 40002), 0, 1, 0), ((R, 40000), (A, 16000), 0, 1, 0)]


def test_the_talkers_copy_or_the_listeners() -> None:
    call = _call(RELAYED)
    media = _media([(0, 100, 300), (1, 101, 300), (2, 100, 300), (3, 101, 300)])
    assert choose_hops(call, [0, 0, 1, 1], media, NEAREST_SENDER) == \
        [0, OTHER_HOP, 1, OTHER_HOP]
    assert choose_hops(call, [0, 0, 1, 1], media, NEAREST_RECEIVER) == \
        [OTHER_HOP, 0, OTHER_HOP, 1]


def test_without_sdp_addresses_the_copy_seen_first() -> None:
    call = _call(RELAYED)
    call.offers = ([], [])
    media = _media([(0, 105, 300), (1, 101, 300), (2, 100, 300), (3, 103, 300)])
    assert choose_hops(call, [0, 0, 1, 1], media, NEAREST_SENDER) == \
        [OTHER_HOP, 0, 1, OTHER_HOP]


def test_a_new_port_after_a_reinvite_is_not_a_hop() -> None:
    call = _call(RELAYED[:1] + [((A, 16010), (R, 40000), 1, 0, 0)])
    media = _media([(0, 100, 300), (1, 100 + 20 * 290, 300)])  # they meet for 10 packets
    assert choose_hops(call, [0, 0], media) == [0, 0]


def test_a_stray_flow_is_not_a_hop() -> None:
    call = _call(RELAYED[:2])
    media = _media([(0, 100, 300), (1, 300, MIN_HOP_PACKETS - 1)])
    assert choose_hops(call, [0, 0], media) == [0, 0]


def test_the_other_hops_rtcp_goes_with_it() -> None:
    call = _call(RELAYED + [((R, 40003), (B, 26001), 1, 0, 1), ((A, 16001), (R, 40001), 1, 0, 1)])
    media = _media([(0, 100, 300), (1, 101, 300), (2, 100, 300), (3, 101, 300), (4, 500, 3),
                    (5, 500, 3)])
    got = choose_hops(call, [0, 0, 1, 1, 0, 0], media)
    assert got[4] == OTHER_HOP and got[5] == 0
