from __future__ import annotations

from tests.helpers import ip4
from writer.flows import UNKNOWN, assign_channels

A = (ip4("192.0.2.1"), 4000)  # caller announced
B = (ip4("198.51.100.1"), 6000)  # callee announced
N = (ip4("203.0.113.9"), 7000)  # unannounced (NAT, gateway)


def test_symmetric() -> None:
    assert assign_channels([(A, B, 1, 0, 0), (B, A, 0, 1, 0)]) == [0, 1]


def test_destination_decides_over_source_and_learns() -> None:
    # media to the callee comes from an unannounced address; media to that address is the callee's
    flows = [(A, N, -1, 0, 0), (N, B, 1, -1, 0)]
    assert assign_channels(flows) == [1, 0]


def test_one_sided_source_only() -> None:
    assert assign_channels([(A, N, -1, 0, 0)]) == [0]


def test_second_destination_of_an_announced_sender_is_not_audio() -> None:
    other = (ip4("198.51.100.1"), 6002)
    assert assign_channels([(A, B, 1, 0, 0), (A, other, -1, 0, 0)]) == [0, UNKNOWN]
