"""Link, network and transport decoding for the per-packet hot path.

``decode`` turns one frame into ``(proto, src, dst, sport, dport, payload)`` or, for a frame
that carries nothing calltap uses, an integer drop reason (index into ``DROP_REASONS``).
Addresses are the raw 4 or 16 address bytes: hashable, cheap, formatted only for output.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

# Drop reasons, counted by the shells; the index is the code ``decode`` returns.
DROP_REASONS = (
    "unsupported_linktype",
    "truncated_link_header",
    "non_ip_ethertype",
    "truncated_ip_header",
    "bad_ip_version",
    "bad_ip_length",
    "ip_fragment",
    "non_udp_transport",
    "tcp_not_reassembled",
    "truncated_udp_header",
    "bad_udp_length",
    "too_many_vlan_tags",
    "too_deep_encapsulation",
    "unsupported_tunnel",
    "truncated_tcp_header",
)
(
    UNSUPPORTED_LINKTYPE,
    TRUNCATED_LINK,
    NON_IP,
    TRUNCATED_IP,
    BAD_IP_VERSION,
    BAD_IP_LENGTH,
    IP_FRAGMENT,
    NON_UDP,
    TCP,
    TRUNCATED_UDP,
    BAD_UDP_LENGTH,
    TOO_MANY_VLANS,
    TOO_DEEP,
    BAD_TUNNEL,
    TRUNCATED_TCP,
) = range(len(DROP_REASONS))

UDP = 17
TCP_PROTO = 6
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_ALIASES = (12, 14)  # DLT_RAW values on some BSDs/OpenBSD

# More stacked tags than any real network uses means a loop in hostile input.
MAX_VLAN_TAGS = 8
_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_IPV6_EXT = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
# Tunnels inside tunnels followed before giving up: real mirrors nest two or three.
MAX_ENCAP_DEPTH = 4
# MPLS labels popped before giving up; real stacks are a few deep.
MAX_MPLS_LABELS = 16
VXLAN_PORT = 4789
# IPv6 extension headers walked before giving up (RFC 8200 sets no limit; hostile chains do).
MAX_IPV6_EXT = 8

_U16 = struct.Struct("!H")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct("!I")
_UDP = struct.Struct("!HHH")

Decoded = tuple[int, bytes, bytes, int, int, bytes]
"""(transport protocol, source address, destination address, source port, dest port,
payload); for TCP the payload is the whole segment, header included."""


# The common frame in one unpack: Ethernet without tags, IPv4 without options, UDP.
# (ethertype, version+IHL, total length, flags+fragment offset, protocol, source,
# destination, source port, destination port, UDP length). Read 4 bytes on, the same
# fields of a frame behind one 802.1Q tag (mirror ports on trunks).
_ETH_IPV4_UDP = struct.Struct("!12xHBxH2xHxB2x4s4sHHH")


def decode(linktype: int, frame: bytes) -> Decoded | int:
    """Decode one captured frame down to its UDP payload, or return a drop reason. Tunnels
    (GRE, ERSPAN, VXLAN, IP-in-IP, MPLS) are opened: the result is the innermost UDP."""
    if linktype == LINKTYPE_ETHERNET and len(frame) >= 42:
        # the hot path: one unpack for what nearly every packet is. Any other frame, and
        # any check this one would fail, goes the whole way below, so the result is the same.
        tag = 4 if frame[12] == 0x81 and frame[13] == 0 else 0
        if len(frame) >= 42 + tag:
            etype, vihl, total, frag, proto, src, dst, sport, dport, ulen = \
                _ETH_IPV4_UDP.unpack_from(frame, tag)
            if (etype == 0x0800 and vihl == 0x45 and proto == UDP and not frag & 0x3FFF
                    and 28 <= total <= len(frame) - 14 - tag and 8 <= ulen <= total - 20
                    and dport != VXLAN_PORT):
                return UDP, src, dst, sport, dport, frame[42 + tag : 34 + tag + ulen]
    return decode_layers(linktype, frame)


def decode_layers(linktype: int, frame: bytes) -> Decoded | int:
    """``decode`` layer by layer, with no fast path."""
    link = _link(linktype, frame)
    if type(link) is int:
        return link
    etype, off = link  # type: ignore[misc]
    return _net(frame, etype, off, 0)


def _ether(frame: bytes, off: int) -> tuple[int, int] | int:
    """(ethertype, offset of the payload) of an Ethernet header at ``off``: 802.1Q/802.1ad
    tags skipped, PPPoE session frames opened."""
    if len(frame) < off + 14:
        return TRUNCATED_LINK
    etype = _U16.unpack_from(frame, off + 12)[0]
    off += 14
    tags = 0
    while etype in _VLAN_TYPES:
        tags += 1
        if tags > MAX_VLAN_TAGS:
            return TOO_MANY_VLANS
        if len(frame) < off + 4:
            return TRUNCATED_LINK
        etype = _U16.unpack_from(frame, off + 2)[0]
        off += 4
    if etype == 0x8864:  # PPPoE session stage (RFC 2516): 6-byte header + PPP protocol
        if len(frame) < off + 8:
            return TRUNCATED_LINK
        ppp = _U16.unpack_from(frame, off + 6)[0]
        off += 8
        etype = 0x0800 if ppp == 0x0021 else 0x86DD if ppp == 0x0057 else 0
    return etype, off


def _net(frame: bytes, etype: int, off: int, depth: int) -> Decoded | int:
    if etype == 0x0800:
        return _ipv4(frame, off, depth)
    if etype == 0x86DD:
        return _ipv6(frame, off, depth)
    if etype in (0x8847, 0x8848):  # MPLS (RFC 3032): labels until bottom of stack
        for _ in range(MAX_MPLS_LABELS):
            if len(frame) < off + 4:
                return TRUNCATED_LINK
            bottom = frame[off + 2] & 0x01
            off += 4
            if bottom:
                if len(frame) <= off:
                    return TRUNCATED_IP
                ver = frame[off] >> 4
                return _net(frame, 0x0800 if ver == 4 else 0x86DD if ver == 6 else 0, off, depth)
        return BAD_TUNNEL
    return NON_IP


def _link(linktype: int, frame: bytes) -> tuple[int, int] | int:
    """(ethertype, offset of the network header) or a drop reason."""
    if linktype == LINKTYPE_ETHERNET:
        return _ether(frame, 0)
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return TRUNCATED_LINK
        etype = _U16.unpack_from(frame, 14)[0]
        off = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return TRUNCATED_LINK
        etype = _U16.unpack_from(frame, 0)[0]
        off = 20
    elif linktype == LINKTYPE_RAW or linktype in _RAW_ALIASES:
        if not frame:
            return TRUNCATED_LINK
        ver = frame[0] >> 4
        etype = 0x0800 if ver == 4 else 0x86DD if ver == 6 else 0
        off = 0
    elif linktype == LINKTYPE_IPV4:
        etype, off = 0x0800, 0
    elif linktype == LINKTYPE_IPV6:
        etype, off = 0x86DD, 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return TRUNCATED_LINK
        # NULL stores the family in the writer's byte order, LOOP in network order.
        fam = _U32_BE.unpack_from(frame, 0)[0]
        if linktype == LINKTYPE_NULL and fam > 0xFFFF:
            fam = _U32_LE.unpack_from(frame, 0)[0]
        etype = 0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else 0
        off = 4
    else:
        return UNSUPPORTED_LINKTYPE
    return etype, off


def _ipv4(frame: bytes, off: int, depth: int = 0) -> Decoded | int:
    if depth > MAX_ENCAP_DEPTH:
        return TOO_DEEP
    if len(frame) < off + 20:
        return TRUNCATED_IP
    vihl = frame[off]
    if vihl >> 4 != 4:
        return BAD_IP_VERSION
    ihl = (vihl & 0x0F) * 4
    total = _U16.unpack_from(frame, off + 2)[0]
    if ihl < 20 or total < ihl or len(frame) < off + ihl:
        return BAD_IP_LENGTH
    end = off + total
    if end > len(frame):
        return BAD_IP_LENGTH
    # RFC 791: MF flag or a non-zero fragment offset marks a fragment.
    if _U16.unpack_from(frame, off + 6)[0] & 0x3FFF:
        return IP_FRAGMENT
    proto = frame[off + 9]
    if proto == UDP:
        return _udp(frame, off + ihl, end, frame[off + 12 : off + 16], frame[off + 16 : off + 20],
                    depth)
    return _tunnel(frame, proto, off + ihl, end, depth, frame[off + 12 : off + 16],
                   frame[off + 16 : off + 20])


def _ipv6(frame: bytes, off: int, depth: int = 0) -> Decoded | int:
    if depth > MAX_ENCAP_DEPTH:
        return TOO_DEEP
    if len(frame) < off + 40:
        return TRUNCATED_IP
    if frame[off] >> 4 != 6:
        return BAD_IP_VERSION
    end = off + 40 + _U16.unpack_from(frame, off + 4)[0]
    if end > len(frame):
        return BAD_IP_LENGTH
    nxt = frame[off + 6]
    src = frame[off + 8 : off + 24]
    dst = frame[off + 24 : off + 40]
    pos = off + 40
    for _ in range(MAX_IPV6_EXT):
        if nxt not in _IPV6_EXT:
            break
        if pos + 8 > end:
            return TRUNCATED_IP
        nxt, pos = frame[pos], pos + 8 + frame[pos + 1] * 8
    if nxt == 44:  # RFC 8200 section 4.5 fragment header
        return IP_FRAGMENT
    if nxt == UDP:
        return _udp(frame, pos, end, src, dst, depth)
    return _tunnel(frame, nxt, pos, end, depth, src, dst)


def _tunnel(frame: bytes, proto: int, off: int, end: int, depth: int, src: bytes, dst: bytes
            ) -> Decoded | int:
    """TCP (the whole segment, for stream reassembly), IP-in-IP (RFC 2003), IPv6-in-IP
    (RFC 4213) and GRE; other transports are not ours."""
    if proto == 6:
        if off + 20 > end:
            return TRUNCATED_TCP
        sport, dport = _UDP.unpack_from(frame, off)[:2]
        return TCP_PROTO, src, dst, sport, dport, frame[off:end]
    if proto == 4:
        return _ipv4(frame[:end], off, depth + 1)
    if proto == 41:
        return _ipv6(frame[:end], off, depth + 1)
    if proto == 47:
        return _gre(frame[:end], off, depth + 1)
    return NON_UDP


def _gre(frame: bytes, off: int, depth: int) -> Decoded | int:
    """GRE (RFC 2784/2890, and PPTP's version 1), ERSPAN II/III, transparent bridging."""
    if len(frame) < off + 4:
        return TRUNCATED_IP
    flags: int = _U16.unpack_from(frame, off)[0]
    proto: int = _U16.unpack_from(frame, off + 2)[0]
    off += 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
    if flags & 0x0007 == 1 and flags & 0x0080:  # PPTP enhanced GRE: acknowledgment number
        off += 4
    if proto == 0x88BE:  # ERSPAN type II: 8-byte header, then the mirrored Ethernet frame
        off += 8
        proto = 0x6558
    elif proto == 0x22EB:  # ERSPAN type III: 12 bytes, plus 8 when the O flag is set
        if len(frame) < off + 12:
            return TRUNCATED_IP
        off += 12 + (8 if frame[off + 11] & 0x01 else 0)
        proto = 0x6558
    if proto == 0x6558:  # transparent Ethernet bridging
        inner = _ether(frame, off)
        if type(inner) is int:
            return inner
        etype, off = inner  # type: ignore[misc]
        return _net(frame, etype, off, depth)
    if proto == 0x880B:  # PPP: optional address/control 0xFF03, then the protocol
        if frame[off : off + 2] == b"\xff\x03":
            off += 2
        if len(frame) < off + 2:
            return TRUNCATED_IP
        ppp = _U16.unpack_from(frame, off)[0]
        proto = 0x0800 if ppp == 0x0021 else 0x86DD if ppp == 0x0057 else 0
        off += 2
    if proto in (0x0800, 0x86DD, 0x8847, 0x8848):
        return _net(frame, proto, off, depth)
    return BAD_TUNNEL


def _udp(frame: bytes, off: int, end: int, src: bytes, dst: bytes, depth: int = 0
         ) -> Decoded | int:
    if off + 8 > end:
        return TRUNCATED_UDP
    sport, dport, ulen = _UDP.unpack_from(frame, off)
    # RFC 768: length covers header and data; 0 is allowed for IPv6 jumbograms only.
    if ulen < 8 or off + ulen > end:
        return BAD_UDP_LENGTH
    if dport == VXLAN_PORT and ulen >= 8 + 8 + 14 and frame[off + 8] & 0x08:
        # VXLAN (RFC 7348): 8-byte header with the I flag, then the tunnelled Ethernet frame
        if depth >= MAX_ENCAP_DEPTH:
            return TOO_DEEP
        inner = _ether(frame[: off + ulen], off + 16)
        if type(inner) is int:
            return inner
        etype, ioff = inner  # type: ignore[misc]
        return _net(frame[: off + ulen], etype, ioff, depth + 1)
    return UDP, src, dst, sport, dport, frame[off + 8 : off + ulen]


Fragment = tuple[tuple[bytes, bytes, int, int], int, bool, int, bytes, bytes, bytes]
"""(reassembly key, byte offset, more fragments follow, transport protocol, source,
destination, fragment data)."""


def decode_fragment(linktype: int, frame: bytes) -> Fragment | int:
    """The fragment fields of a frame ``decode`` reported as IP_FRAGMENT."""
    link = _link(linktype, frame)
    if type(link) is int:
        return link
    etype, off = link  # type: ignore[misc]
    if etype == 0x0800:
        ihl = (frame[off] & 0x0F) * 4
        end = off + _U16.unpack_from(frame, off + 2)[0]
        ident = _U16.unpack_from(frame, off + 4)[0]
        flags = _U16.unpack_from(frame, off + 6)[0]
        src, dst = frame[off + 12 : off + 16], frame[off + 16 : off + 20]
        proto = frame[off + 9]
        # RFC 791: offset in 8-byte units, MF is bit 13
        return ((src, dst, ident, proto), (flags & 0x1FFF) * 8, bool(flags & 0x2000), proto,
                src, dst, frame[off + ihl : end])
    if etype == 0x86DD:
        end = off + 40 + _U16.unpack_from(frame, off + 4)[0]
        src, dst = frame[off + 8 : off + 24], frame[off + 24 : off + 40]
        nxt, pos = frame[off + 6], off + 40
        for _ in range(MAX_IPV6_EXT):
            if nxt not in _IPV6_EXT:
                break
            nxt, pos = frame[pos], pos + 8 + frame[pos + 1] * 8
        if nxt != 44 or pos + 8 > end:
            return TRUNCATED_IP
        # RFC 8200 section 4.5: next header, reserved, offset (13 bits) + M flag, identification
        proto = frame[pos]
        offword = _U16.unpack_from(frame, pos + 2)[0]
        ident = _U32_BE.unpack_from(frame, pos + 4)[0]
        return ((src, dst, ident, proto), offword & 0xFFF8, bool(offword & 1), proto,
                src, dst, frame[pos + 8 : end])
    return NON_IP


def decode_transport(proto: int, src: bytes, dst: bytes, data: bytes) -> Decoded | int:
    """A reassembled transport payload as ``decode`` would have returned it."""
    if proto != UDP:
        return _tunnel(data, proto, 0, len(data), 0, src, dst)
    return _udp(data, 0, len(data), src, dst)


def format_ip(addr: bytes) -> str:
    """Printable form of a 4- or 16-byte address."""
    if len(addr) == 4:  # the common case, without building an address object
        return socket.inet_ntoa(addr)
    return str(ipaddress.ip_address(addr))


def parse_ip(text: str) -> bytes | None:
    """Packed bytes of a textual IPv4/IPv6 address, or None when it is not one."""
    text = text.strip()
    try:  # dotted quads, the common case, without building an address object
        return socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # not one (ValueError: a NUL in it)
        pass
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return None


def outer_vlan(linktype: int, frame: bytes) -> int:
    """The outermost 802.1Q/802.1ad VLAN id of an Ethernet frame, -1 without one. Called for
    signalling only, where the recording policy may ask for it."""
    if linktype != 1 or len(frame) < 16:
        return -1
    if _U16.unpack_from(frame, 12)[0] not in _VLAN_TYPES:
        return -1
    return int(_U16.unpack_from(frame, 14)[0] & 0x0FFF)
