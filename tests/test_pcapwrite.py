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


def test_udp6_frame_is_what_the_decoder_reads() -> None:
    from capture.decode import decode, parse_ip
    from capture.pcapwrite import udp6_frame

    src, dst = parse_ip("2001:db8::1"), parse_ip("2001:db8::2")
    assert src is not None and dst is not None
    frame = udp6_frame(src, 4000, dst, 5000, b"payload!x")
    assert decode(1, frame) == (17, src, dst, 4000, 5000, b"payload!x")
    # RFC 8200 8.1: the checksum over the pseudo-header and datagram sums to all ones
    data = src + dst + len(frame[54:]).to_bytes(4, "big") + b"\0\0\0\x11" + frame[54:] + b"\0"
    total = sum(int.from_bytes(data[k:k + 2], "big") for k in range(0, len(data) - 1, 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF
