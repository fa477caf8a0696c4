"""pcap writing and Ethernet/IPv4/UDP frames, for the generator and tools (not the hot path)."""

from __future__ import annotations

import struct
from typing import Protocol

_GLOBAL = struct.Struct("<IHHiIII")
_REC = struct.Struct("<IIII")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")


def pcap_header(linktype: int = 1, nanosecond: bool = False, snaplen: int = 262_144) -> bytes:
    return _GLOBAL.pack(0xA1B23C4D if nanosecond else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts_ns: int, frame: bytes, nanosecond: bool = False) -> bytes:
    sec, rem = divmod(ts_ns, 1_000_000_000)
    frac = rem if nanosecond else rem // 1000
    return _REC.pack(sec, frac, len(frame), len(frame)) + frame


def ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


_ETH4 = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
_ETH6 = _ETH4[:12] + b"\x86\xdd"
_IP_UDP = struct.Struct("!BBHHHBBH4s4sHHHH")
_ADDR_WORDS = struct.Struct("!HH")


def udp_frame(
    src: bytes, sport: int, dst: bytes, dport: int, payload: bytes, ident: int = 0
) -> bytes:
    """An Ethernet II + IPv4 + UDP frame (UDP checksum 0: none, allowed by RFC 768)."""
    total = 28 + len(payload)
    ident &= 0xFFFF
    # RFC 791 header checksum: the one's complement sum of the header's 16-bit words
    # (version/IHL/TOS 0x4500, TTL/protocol 64/17 = 0x4011, flags and offset 0)
    s = 0x4500 + total + ident + 0x4011 + sum(_ADDR_WORDS.unpack(src)) \
        + sum(_ADDR_WORDS.unpack(dst))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return b"".join((_ETH4, _IP_UDP.pack(0x45, 0, total, ident, 0, 64, 17, ~s & 0xFFFF, src,
                                         dst, sport, dport, total - 20, 0), payload))


def udp6_frame(src: bytes, sport: int, dst: bytes, dport: int, payload: bytes) -> bytes:
    """An Ethernet II + IPv6 + UDP frame, with the UDP checksum IPv6 requires (RFC 8200
    section 8.1)."""
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!IxxxB", length, 17)
    udp = _UDP.pack(sport, dport, length, 0) + payload
    data = pseudo + udp + (b"\0" if len(udp) % 2 else b"")
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    csum = (~total & 0xFFFF) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    hdr = struct.pack("!IHBB", 6 << 28, length, 17, 64) + src + dst
    return _ETH6 + hdr + udp


class Sink(Protocol):
    """Where records go: an open binary file, or a sealed one (writer.seal)."""

    def write(self, data: bytes, /) -> int: ...


class PcapWriter:
    """Appends records to an open binary file."""

    def __init__(self, f: Sink, linktype: int = 1, nanosecond: bool = False) -> None:
        self.f = f
        self.nanosecond = nanosecond
        f.write(pcap_header(linktype, nanosecond))
        self.count = 0

    def write(self, ts_ns: int, frame: bytes) -> None:
        self.f.write(pcap_record(ts_ns, frame, self.nanosecond))
        self.count += 1


def tcp_frame(src: bytes, sport: int, dst: bytes, dport: int, seq: int, payload: bytes,
              flags: int = 0x18) -> bytes:
    """An Ethernet II + IPv4 + TCP frame (checksum 0: captures of offloading NICs show that)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, 0x50, flags, 65535, 0, 0)
    tcp += payload
    hdr = _IP.pack(0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + hdr + tcp
