"""Batch decoding of the common case, all packets at once: Ethernet (one optional VLAN tag),
Linux cooked or raw IPv4, unfragmented, UDP. Everything else (IPv6, tunnels, fragments, TCP,
other link types) is left to the per-packet decoder; this only says which packets it took.

Sans-IO over a PacketIndex's arrays: no reads, no clock.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from capture.index import PacketIndex

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

ETHERNET, RAW, RAW_IPV4, LINUX_SLL = 1, 101, 228, 113
ETH_IPV4, ETH_VLAN = 0x0800, 0x8100
UDP = 17
# RFC 5761 section 4: payload types 72-76 with the marker bit are RTCP packet types 200-204.
RTCP_PT_LOW, RTCP_PT_HIGH = 72, 76
# Ports below this are well-known services, never dynamically allocated media ports.
MIN_MEDIA_PORT = 1024


class UdpBatch:
    """IPv4/UDP fields of the packets the batch decoder took (``taken`` marks them; the
    other arrays are meaningful where ``taken`` is set)."""

    __slots__ = ("taken", "src", "dst", "sport", "dport", "payload", "size")

    def __init__(self, n: int) -> None:
        self.taken: BOOL = np.zeros(n, np.bool_)
        self.src: I64 = np.zeros(n, np.int64)
        self.dst: I64 = np.zeros(n, np.int64)
        self.sport: I64 = np.zeros(n, np.int64)
        self.dport: I64 = np.zeros(n, np.int64)
        self.payload: I64 = np.zeros(n, np.int64)
        """Offset of the UDP payload in the index's data."""
        self.size: I64 = np.zeros(n, np.int64)
        """UDP payload bytes actually captured."""


def _u8(data: npt.NDArray[np.uint8], at: I64) -> I64:
    return data[at].astype(np.int64)


def _words(data: npt.NDArray[np.uint8], dtype: str) -> npt.NDArray[np.generic]:
    """``data`` seen as a big-endian word at every byte offset (an overlapping view, no
    copy): one gather reads a whole field instead of one per byte."""
    width = np.dtype(dtype).itemsize
    return np.ndarray(shape=(max(len(data) - width + 1, 0),), dtype=dtype, buffer=data,
                      strides=(1,))


def _be16(data: npt.NDArray[np.uint8], at: I64) -> I64:
    return _words(data, ">u2")[at].astype(np.int64)


def _be32(data: npt.NDArray[np.uint8], at: I64) -> I64:
    return _words(data, ">u4")[at].astype(np.int64)


# Leading bytes of each packet copied side by side before the headers are read: the
# largest link header here (VLAN-tagged Ethernet, 18) plus a 20-byte IPv4 header and UDP's
# 8, rounded up to whole words. A packet with IP options past it goes packet by packet.
HEAD = 64


def _heads(data: npt.NDArray[np.uint8], start: I64) -> npt.NDArray[np.uint8]:
    """The first HEAD bytes of each packet at ``start``, packet after packet (bytes past a
    packet's end are whatever follows it). One 8-byte gather per word: reading header
    fields straight from the capture took a cache miss per field and packet."""
    words = HEAD // 8
    n = len(start)
    head = np.zeros((n, HEAD), np.uint8)
    near_end = start + HEAD > len(data)
    far = np.flatnonzero(~near_end)
    if len(far):
        view = np.ndarray(shape=(max(len(data) - 7, 0),), dtype=np.uint64, buffer=data,
                          strides=(1,))
        head[far] = view[start[far, None] + np.arange(0, HEAD, 8)].view(np.uint8).reshape(
            len(far), words * 8)
    for r in np.flatnonzero(near_end).tolist():  # the last packets of the capture
        tail = data[int(start[r]):int(start[r]) + HEAD]
        head[r, :len(tail)] = tail
    return head.reshape(-1)


def decode_udp(index: PacketIndex) -> UdpBatch:
    """IPv4/UDP headers of every packet whose layout the batch decoder knows. Each step
    narrows the set of candidates, so later fields are read only where they matter."""
    n = len(index)
    out = UdpBatch(n)
    if n == 0:
        return out
    length, link = index.length, index.link
    # the headers are read from a compact copy; offsets below are into it
    data = _heads(index.data, index.offset)
    start = np.arange(n, dtype=np.int64) * HEAD
    # where IPv4 starts, per link layer
    parts: list[tuple[I64, I64]] = []
    eth = np.nonzero((link == ETHERNET) & (length >= 34))[0]
    etype = _be16(data, start[eth] + 12)
    plain = eth[etype == ETH_IPV4]
    parts.append((plain, start[plain] + 14))
    tagged = eth[(etype == ETH_VLAN) & (length[eth] >= 38)]
    tagged = tagged[_be16(data, start[tagged] + 16) == ETH_IPV4]
    parts.append((tagged, start[tagged] + 18))
    raw = np.nonzero(((link == RAW) | (link == RAW_IPV4)) & (length >= 28))[0]
    parts.append((raw, start[raw]))
    sll = np.nonzero((link == LINUX_SLL) & (length >= 44))[0]
    sll = sll[_be16(data, start[sll] + 14) == ETH_IPV4]
    parts.append((sll, start[sll] + 16))
    idx = np.concatenate([p[0] for p in parts])
    l3 = np.concatenate([p[1] for p in parts])
    end = start[idx] + length[idx]
    ver_ihl = _u8(data, l3)
    ihl = (ver_ihl & 0x0F) * 4
    keep = (ver_ihl >> 4 == 4) & (ihl >= 20) & (_u8(data, l3 + 9) == UDP)
    keep &= (l3 + ihl + 8 <= end) & (l3 + ihl + 8 <= start[idx] + HEAD)
    idx, l3, ihl, end = idx[keep], l3[keep], ihl[keep], end[keep]
    keep = (_be16(data, l3 + 6) & 0x3FFF) == 0  # no MF flag, offset 0: not a fragment
    idx, l3, ihl, end = idx[keep], l3[keep], ihl[keep], end[keep]
    l4 = l3 + ihl
    total = _be16(data, l3 + 2)
    ulen = _be16(data, l4 + 4)
    payload = l4 + 8
    size = np.minimum(np.minimum(ulen - 8, total - ihl - 8), end - payload)
    keep = (ulen >= 8) & (total >= ihl + 8) & (size >= 0)
    idx, l3, l4, payload, size = idx[keep], l3[keep], l4[keep], payload[keep], size[keep]
    out.taken[idx] = True
    out.src[idx] = _be32(data, l3 + 12)
    out.dst[idx] = _be32(data, l3 + 16)
    out.sport[idx] = _be16(data, l4)
    out.dport[idx] = _be16(data, l4 + 2)
    out.payload[idx] = index.offset[idx] + (payload - start[idx])
    out.size[idx] = size
    return out


def rtp_like(index: PacketIndex, udp: UdpBatch) -> BOOL:
    """Taken packets whose payload can be RTP (RFC 3550 5.1: version 2, a full 12-byte
    header) between unprivileged ports, and not RTCP. SIP, STUN and DTLS never match:
    their first byte is never 0b10xxxxxx."""
    data = index.data
    ok = udp.taken & (udp.size >= 12)
    ok &= (udp.sport >= MIN_MEDIA_PORT) & (udp.dport >= MIN_MEDIA_PORT)
    idx = np.nonzero(ok)[0]
    p = udp.payload[idx]
    pt = _u8(data, p + 1) & 0x7F
    good = ((_u8(data, p) >> 6) == 2) & ((pt < RTCP_PT_LOW) | (pt > RTCP_PT_HIGH))
    ok[idx[~good]] = False
    return ok


def rtp_fields(index: PacketIndex, at: I64) -> tuple[I64, I64, I64, I64, I64]:
    """(payload type, marker, sequence, timestamp, SSRC) of RTP headers at ``at``."""
    data = index.data
    b1 = _u8(data, at + 1)
    return b1 & 0x7F, b1 >> 7, _be16(data, at + 2), _be32(data, at + 4), _be32(data, at + 8)
