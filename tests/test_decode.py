from __future__ import annotations

import ipaddress
import struct

import pytest

from capture import decode as d
from tests.helpers import ip4, udp4

PAYLOAD = b"INVITE sip:x SIP/2.0\r\n"
ETH = udp4("192.0.2.1", 5060, "198.51.100.2", 5070, PAYLOAD)
IP = ETH[14:]


def expect_ok(r: object) -> tuple[int, bytes, bytes, int, int, bytes]:
    assert not isinstance(r, int), d.DROP_REASONS[r]  # type: ignore[index]
    return r  # type: ignore[return-value]


def test_ethernet() -> None:
    proto, src, dst, sport, dport, payload = expect_ok(d.decode(1, ETH))
    assert (proto, src, dst, sport, dport, payload) == (
        17, ip4("192.0.2.1"), ip4("198.51.100.2"), 5060, 5070, PAYLOAD)


def test_vlan_and_qinq() -> None:
    one = ETH[:12] + b"\x81\x00\x00\x18" + ETH[12:]
    two = ETH[:12] + b"\x88\xa8\x00\x64\x81\x00\x00\x18" + ETH[12:]
    assert expect_ok(d.decode(1, one))[5] == PAYLOAD
    assert expect_ok(d.decode(1, two))[5] == PAYLOAD
    many = ETH[:12] + b"\x81\x00\x00\x01" * 20 + ETH[12:]
    assert d.decode(1, many) == d.TOO_MANY_VLANS


def test_pppoe_session() -> None:
    frame = ETH[:12] + b"\x88\x64" + b"\x11\x00\x00\x01" + struct.pack("!H", len(IP) + 2)
    frame += b"\x00\x21" + IP
    assert expect_ok(d.decode(1, frame))[5] == PAYLOAD


def test_linux_sll_and_sll2() -> None:
    sll = b"\x00\x00\x00\x01\x00\x06" + b"\0" * 8 + b"\x08\x00" + IP
    sll2 = b"\x08\x00\x00\x00" + b"\0" * 16 + IP
    assert expect_ok(d.decode(113, sll))[5] == PAYLOAD
    assert expect_ok(d.decode(276, sll2))[5] == PAYLOAD


def test_raw_and_null() -> None:
    assert expect_ok(d.decode(101, IP))[5] == PAYLOAD
    assert expect_ok(d.decode(228, IP))[5] == PAYLOAD
    assert expect_ok(d.decode(0, struct.pack("<I", 2) + IP))[5] == PAYLOAD
    assert expect_ok(d.decode(0, struct.pack(">I", 2) + IP))[5] == PAYLOAD
    assert expect_ok(d.decode(108, struct.pack(">I", 2) + IP))[5] == PAYLOAD


def ipv6_frame(next_header: int = 17, ext: bytes = b"") -> bytes:
    udp = struct.pack("!HHHH", 5060, 5060, 8 + len(PAYLOAD), 0) + PAYLOAD
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    hdr = struct.pack("!IHBB", 0x60000000, len(ext) + len(udp), next_header, 64) + src + dst
    return hdr + ext + udp


def test_ipv6_with_extension_header() -> None:
    r = expect_ok(d.decode(229, ipv6_frame()))
    assert r[5] == PAYLOAD and len(r[1]) == 16
    hop = bytes([17, 0]) + b"\0" * 6  # hop-by-hop options, next header UDP
    assert expect_ok(d.decode(229, ipv6_frame(0, hop)))[5] == PAYLOAD
    frag = bytes([17, 0, 0, 1]) + b"\0" * 4
    assert d.decode(229, ipv6_frame(44, frag)) == d.IP_FRAGMENT


def test_ipv4_fragment_and_non_udp() -> None:
    mf = IP[:6] + b"\x20\x00" + IP[8:]
    assert d.decode(101, mf) == d.IP_FRAGMENT
    tcp = IP[:9] + b"\x06" + IP[10:]
    r = expect_ok(d.decode(101, tcp))
    assert r[0] == d.TCP_PROTO and r[5] == IP[20:]  # the whole segment, for reassembly
    icmp = IP[:9] + b"\x01" + IP[10:]
    assert d.decode(101, icmp) == d.NON_UDP


def test_ethernet_padding_is_cut_by_ip_length() -> None:
    assert expect_ok(d.decode(1, ETH + b"\0" * 20))[5] == PAYLOAD


def test_unsupported_linktype() -> None:
    assert d.decode(9999, ETH) == d.UNSUPPORTED_LINKTYPE


@pytest.mark.parametrize("link,frame", [(1, ETH), (101, IP), (229, ipv6_frame())])
def test_every_prefix_is_a_drop_reason_or_exact(link: int, frame: bytes) -> None:
    full = d.decode(link, frame)
    for cut in range(len(frame)):
        r = d.decode(link, frame[:cut])
        assert isinstance(r, int), f"prefix {cut} decoded"
        assert 0 <= r < len(d.DROP_REASONS)
    assert not isinstance(full, int)


def test_bad_udp_length() -> None:
    bad = IP[:20] + IP[20:24] + struct.pack("!H", 4) + IP[26:]
    assert d.decode(101, bad) == d.BAD_UDP_LENGTH


def test_format_and_parse_ip() -> None:
    assert d.format_ip(ip4("192.0.2.7")) == "192.0.2.7"
    assert d.parse_ip("2001:db8::1") == bytes.fromhex("20010db8000000000000000000000001")
    assert d.parse_ip("not-an-ip") is None


@pytest.mark.parametrize("text", [
    "192.0.2.7", " 10.0.0.1\t", "0.0.0.0", "01.2.3.4", "1.2.3.04", "1.2.3", "127.1",
    "256.1.1.1", "1.2.3.4.5", "0x1.2.3.4", "1.2.3.4\x00", "\u0661.2.3.4", "1.2.3.4/24",
    "::1", "fe80::1%eth0", "::ffff:1.2.3.4", "", "1. 2.3.4"])
def test_parse_ip_agrees_with_ipaddress(text: str) -> None:
    """Dotted quads go the fast way (inet_pton): the same answers, odd forms included."""
    try:
        want: bytes | None = ipaddress.ip_address(text.strip()).packed
    except ValueError:
        want = None
    assert d.parse_ip(text) == want


def ip4_wrap(proto: int, inner: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2") -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(inner), 0, 0, 64, proto, 0,
                      ip4(src), ip4(dst))
    return hdr + inner


def eth(etype: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", etype) + payload


INNER_ETH = ETH  # the mirrored frame: Ethernet/IPv4/UDP carrying SIP


@pytest.mark.parametrize(
    "name,frame",
    [
        ("ipip", eth(0x0800, ip4_wrap(4, IP))),
        ("6in4", eth(0x0800, ip4_wrap(41, ipv6_frame()[0:]))),
        ("gre-ip", eth(0x0800, ip4_wrap(47, b"\x00\x00\x08\x00" + IP))),
        ("gre-key-seq", eth(0x0800, ip4_wrap(47, b"\x30\x00\x08\x00" + b"\0" * 8 + IP))),
        ("gre-teb", eth(0x0800, ip4_wrap(47, b"\x00\x00\x65\x58" + INNER_ETH))),
        ("erspan-ii", eth(0x0800, ip4_wrap(47, b"\x10\x00\x88\xbe" + b"\0" * 4
                                           + b"\x10\x00\x00\x01" + b"\0" * 4 + INNER_ETH))),
        ("erspan-iii", eth(0x0800, ip4_wrap(47, b"\x00\x00\x22\xeb" + b"\x20" + b"\0" * 10
                                            + b"\x01" + b"\0" * 8 + INNER_ETH))),
        ("gre-ppp", eth(0x0800, ip4_wrap(47, b"\x00\x00\x88\x0b" + b"\xff\x03\x00\x21" + IP))),
        ("mpls", eth(0x8847, b"\x00\x01\x00\x40" + b"\x00\x02\x01\x40" + IP)),
        ("vxlan", eth(0x0800, ip4_wrap(17, struct.pack("!HHHH", 5555, 4789,
                                                      8 + 8 + len(INNER_ETH), 0)
                                       + b"\x08\0\0\0\0\0\x01\0" + INNER_ETH))),
    ],
)
def test_tunnels_are_opened(name: str, frame: bytes) -> None:
    r = expect_ok(d.decode(1, frame))
    assert r[5] == PAYLOAD and r[3] == 5060, name


def test_tunnel_depth_is_bounded() -> None:
    inner = IP
    for _ in range(8):
        inner = ip4_wrap(4, inner)
    assert d.decode(101, inner) == d.TOO_DEEP
    assert d.decode(101, ip4_wrap(47, b"\x00\x00\x12\x34" + IP)) == d.BAD_TUNNEL


def test_outer_vlan() -> None:
    from capture.decode import outer_vlan

    frame = udp4("192.0.2.1", 5060, "192.0.2.2", 5060, b"INVITE")
    assert outer_vlan(1, frame) == -1
    tagged = frame[:12] + b"\x81\x00\x00\x64" + frame[12:]
    assert outer_vlan(1, tagged) == 100
    assert outer_vlan(101, tagged) == -1 and outer_vlan(1, tagged[:14]) == -1


def test_the_fast_path_decodes_as_the_layers_do() -> None:
    """decode's one-unpack paths for Ethernet/IPv4/UDP, bare or behind one 802.1Q tag, give
    what the layer-by-layer walk gives: on every frame of the bundled captures, untagged and
    tagged, and on them with one byte of their headers changed to values that matter (TPID,
    IHL, lengths, fragment bits, protocol, VXLAN)."""
    import random
    from pathlib import Path

    from capture.pcapfile import open_capture

    rng = random.Random(5)
    root = Path(__file__).resolve().parent.parent / "pcaps"
    frames = [(link, frame) for path in sorted(root.glob("*.pcap"))
              for _ts, link, frame in open_capture(str(path))]
    vx = udp4("192.0.2.1", 5000, "198.51.100.2", d.VXLAN_PORT, b"\x08" + bytes(7) + ETH)
    frames += [(1, ETH), (1, vx), (1, ETH + bytes(20)), (1, ETH[:41]), (1, ETH[:42])]
    # each behind one 802.1Q tag as well (the second fast path), and behind 802.1ad
    tagged = [(link, f[:12] + tag + f[12:]) for link, f in frames if link == 1
              for tag in (b"\x81\x00\x00\x18", b"\x88\xa8\x00\x18")]
    frames += tagged + [(1, ETH[:12] + b"\x81\x00\x00\x18" + ETH[12:45])]
    assert len(frames) > 1000
    for link, frame in frames:
        assert d.decode(link, frame) == d.decode_layers(link, frame)
    for link, frame in frames[::7]:
        for at in (12, 13, 14, 16, 17, 18, 20, 21, 23, 24, 25, 27, 36, 37, 38, 39, 40, 41,
                   42, 43):
            if at < len(frame):
                for value in (0, 1, 4, 5, 8, 17, 0x1F, 0x20, 0x45, 0x46, 0xFF,
                              rng.randrange(256)):
                    bad = frame[:at] + bytes([value]) + frame[at + 1:]
                    assert d.decode(link, bad) == d.decode_layers(link, bad), (at, value)
