"""Mirror-port variations of a generated capture, for tests and for trying a setup:
the same calls as a tap, packet broker or HEP agent would deliver them.

    calltap generate OUT.pcap --mirror erspan-iii
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from calltap.relay import RELAY_VARIANTS
from capture.decode import decode
from capture.hep import build_hep3
from capture.pcapwrite import ip_checksum, tcp_frame, udp_frame
from correlate.sip import looks_like_sip

Frame = tuple[int, bytes]


def ip4_header(proto: int, payload_len: int, src: bytes = b"\x0a\0\0\1",
               dst: bytes = b"\x0a\0\0\2") -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:]


def outer_eth(etype: int, payload: bytes) -> bytes:
    return b"\x0e" * 6 + b"\x0c" * 6 + struct.pack("!H", etype) + payload


def vlan(frames: list[Frame]) -> list[Frame]:
    return [(t, f[:12] + b"\x81\x00\x00\x18" + f[12:]) for t, f in frames]


def qinq(frames: list[Frame]) -> list[Frame]:
    return [(t, f[:12] + b"\x88\xa8\x00\x64\x81\x00\x00\x18" + f[12:]) for t, f in frames]


def gre(frames: list[Frame]) -> list[Frame]:
    out = []
    for t, f in frames:
        inner = b"\x20\x00\x08\x00" + b"\0\0\0\x2a" + f[14:]  # key present, IPv4 inside
        out.append((t, outer_eth(0x0800, ip4_header(47, len(inner)) + inner)))
    return out


def erspan2(frames: list[Frame]) -> list[Frame]:
    out = []
    for i, (t, f) in enumerate(frames):
        inner = b"\x10\x00\x88\xbe" + struct.pack("!I", i) + b"\x10\x00\x00\x07" + b"\0" * 4 + f
        out.append((t, outer_eth(0x0800, ip4_header(47, len(inner)) + inner)))
    return out


def erspan3(frames: list[Frame]) -> list[Frame]:
    out = []
    for t, f in frames:
        hdr = b"\x20\x00\x00\x07" + struct.pack("!I", t & 0xFFFFFFFF) + b"\0\0\0\x01"
        inner = b"\x00\x00\x22\xeb" + hdr + b"\0" * 8 + f  # O flag: 8-byte platform subheader
        out.append((t, outer_eth(0x0800, ip4_header(47, len(inner)) + inner)))
    return out


def vxlan(frames: list[Frame]) -> list[Frame]:
    return [(t, udp_frame(b"\x0a\0\0\1", 40000 + i % 100, b"\x0a\0\0\2", 4789,
                          b"\x08\0\0\0\0\0\x2a\0" + f)) for i, (t, f) in enumerate(frames)]


def ipip(frames: list[Frame]) -> list[Frame]:
    return [(t, outer_eth(0x0800, ip4_header(4, len(f) - 14) + f[14:])) for t, f in frames]


def mpls(frames: list[Frame]) -> list[Frame]:
    return [(t, f[:12] + b"\x88\x47" + b"\x00\x01\x00\x40" + b"\x00\x02\x01\x40" + f[14:])
            for t, f in frames]


def duplicated(frames: list[Frame]) -> list[Frame]:
    out = []
    for t, f in frames:  # both directions mirrored on two ports: every packet twice
        out += [(t, f), (t + 40_000, f)]
    return out


def hep3(frames: list[Frame]) -> list[Frame]:
    out = []
    for i, (t, f) in enumerate(frames):
        r = decode(1, f)
        assert not isinstance(r, int)
        pkt = build_hep3(t, r[1], r[2], r[3], r[4], r[5], compress=i % 3 == 0)
        out.append((t + 2_000_000, udp_frame(b"\x0a\0\0\5", 50000, b"\x0a\0\0\x09", 9060, pkt)))
    return out


def nat(frames: list[Frame]) -> list[Frame]:
    """The callee's media arrives from a public address and port its SDP never named."""
    out = []
    for t, f in frames:
        r = decode(1, f)
        assert not isinstance(r, int)
        if not looks_like_sip(r[5]) and r[1][:3] == bytes([198, 51, 100]):
            f = udp_frame(bytes([203, 0, 113, r[1][3]]), r[3] + 1000, r[2], r[4], r[5])
        out.append((t, f))
    return out


def ssrc_change(frames: list[Frame]) -> list[Frame]:
    """The caller restarts its stream halfway: new SSRC, new sequence and timestamp base."""
    switched: list[Frame] = []
    half = (frames[0][0] + frames[-1][0]) // 2
    for t, f in frames:
        r = decode(1, f)
        assert not isinstance(r, int)
        payload = r[5]
        if t > half and not looks_like_sip(payload) and r[1][:3] == bytes([192, 0, 2]):
            seq = (struct.unpack_from("!H", payload, 2)[0] + 20000) & 0xFFFF
            ts = (struct.unpack_from("!I", payload, 4)[0] + 7_000_000) & 0xFFFFFFFF
            payload = payload[:2] + struct.pack("!HII", seq, ts, 0xFEEDF00D) + payload[12:]
            f = udp_frame(r[1], r[3], r[2], r[4], payload)
        switched.append((t, f))
    return switched


def sip_over_tcp(frames: list[Frame]) -> list[Frame]:
    """SIP moves to TCP: one connection per direction, 100 Trying packed with the next
    message, each INVITE split in two and its halves out of order, every other segment
    retransmitted."""
    out: list[Frame] = []
    seqs: dict[tuple[bytes, int, bytes, int], int] = {}
    held: dict[tuple[bytes, int, bytes, int], bytes] = {}
    for t, f in frames:
        r = decode(1, f)
        if isinstance(r, int) or not looks_like_sip(r[5]):
            out.append((t, f))
            continue
        _p, src, dst, sport, dport, payload = r
        key = (src, sport, dst, dport)
        if key not in seqs:
            seqs[key] = 1000
            out.append((t - 1, tcp_frame(src, sport, dst, dport, 999, b"", 0x02)))
        if payload.startswith(b"SIP/2.0 100"):
            held[key] = payload
            continue
        data = held.pop(key, b"") + payload
        seq = seqs[key]
        seqs[key] += len(data)
        if payload.startswith(b"INVITE"):
            half = len(data) // 2
            out.append((t, tcp_frame(src, sport, dst, dport, seq + half, data[half:])))
            out.append((t + 1, tcp_frame(src, sport, dst, dport, seq, data[:half])))
        else:
            out.append((t, tcp_frame(src, sport, dst, dport, seq, data)))
            if len(out) % 2:
                out.append((t + 2, tcp_frame(src, sport, dst, dport, seq, data)))
    return sorted(out, key=lambda x: x[0])


def fragmented_invite(frames: list[Frame]) -> list[Frame]:
    """Every INVITE split into IPv4 fragments of 256 bytes, delivered last first."""
    out: list[Frame] = []
    for t, f in frames:
        if b"INVITE sip:" in f[42:60]:
            out += [(t, p) for p in reversed(fragment_ipv4(f, 256))]
        else:
            out.append((t, f))
    return out


def fragment_ipv4(frame: bytes, size: int) -> list[bytes]:
    """An Ethernet/IPv4 frame as IP fragments of ``size`` payload bytes (a multiple of 8)."""
    eth, ip = frame[:14], frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    payload = ip[ihl:]
    out = []
    for off in range(0, len(payload), size):
        chunk = payload[off : off + size]
        more = off + size < len(payload)
        hdr = bytearray(ip[:ihl])
        struct.pack_into("!H", hdr, 2, ihl + len(chunk))
        struct.pack_into("!H", hdr, 6, (0x2000 if more else 0) | (off // 8))
        struct.pack_into("!H", hdr, 10, 0)
        struct.pack_into("!H", hdr, 10, ip_checksum(bytes(hdr)))
        out.append(eth + bytes(hdr) + chunk)
    return out


VARIANTS: dict[str, Callable[[list[Frame]], list[Frame]]] = {
    "vlan": vlan, "qinq": qinq, "gre": gre, "erspan-ii": erspan2, "erspan-iii": erspan3,
    "vxlan": vxlan, "ip-in-ip": ipip, "mpls": mpls, "duplicated-mirror": duplicated,
    "hep3": hep3, "nat-media-source": nat, "ssrc-change": ssrc_change,
    "sip-over-tcp": sip_over_tcp, "fragmented-invite": fragmented_invite,
    **RELAY_VARIANTS,
}
"""Name to transformation of a capture's frames (Ethernet link type, time order kept)."""
