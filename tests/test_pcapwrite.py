from __future__ import annotations

import dpkt

from capture.pcapwrite import ip_checksum, pcap_header, pcap_record, udp_frame
from tests.helpers import ip4


def test_frames_read_back_with_dpkt() -> None:
    frame = udp_frame(ip4("192.0.2.1"), 1000, ip4("192.0.2.2"), 2000, b"hello")
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    assert isinstance(ip, dpkt.ip.IP) and ip.data.sport == 1000 and ip.data.data == b"hello"
    assert ip_checksum(bytes(frame[14:34])) == 0  # a correct header sums to zero


def test_pcap_header_and_record() -> None:
    data = pcap_header() + pcap_record(1_500_000_000_123_456_000, b"abc")
    assert len(data) == 24 + 16 + 3
