"""Batch decoding of the common case, all packets at once: Ethernet (one optional VLAN tag),
Linux cooked or raw IPv4, unfragmented, UDP. Everything else (IPv6, tunnels, fragments, TCP,
other link types) is left to the per-packet decoder; this only says which packets it took.

Sans-IO over a PacketIndex's arrays: no reads, no clock.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from capture import overlap
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

    __slots__ = ("taken", "src", "dst", "sport", "dport", "payload", "size", "lead")

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
        self.lead: I64 = np.zeros((n, 2), np.int64)
        """The payload's first 16 bytes as two big-endian words, bytes past its end zero
        (what duplicate suppression compares)."""


def _u8(data: npt.NDArray[np.uint8], at: I64) -> I64:
    return data[at].astype(np.int64)


def _be16(data: npt.NDArray[np.uint8], at: I64) -> I64:
    return overlap.words(data, ">u2")[at].astype(np.int64)


def _be32(data: npt.NDArray[np.uint8], at: I64) -> I64:
    return overlap.words(data, ">u4")[at].astype(np.int64)


# Leading bytes of each packet copied side by side before the headers are read: the
# largest link header here (VLAN-tagged Ethernet, 18) plus a 20-byte IPv4 header and UDP's
# 8, rounded up to whole words. A packet with IP options past it goes packet by packet.
HEAD = 64


def _heads(data: npt.NDArray[np.uint8], start: I64) -> npt.NDArray[np.uint8]:
    """The first HEAD bytes of each packet at ``start``, packet after packet (bytes past a
    packet's end are whatever follows it). Each packet's bytes are one row of an
    overlapping view of the capture, copied whole: reading header fields straight from
    the capture took a cache miss per field and packet."""
    n = len(start)
    last = len(data) - HEAD  # the last row that fits in the capture
    rows_at = overlap.rows(data, HEAD)
    near_end = start > last
    if not near_end.any():
        return rows_at[start].reshape(-1)
    head = np.zeros((n, HEAD), np.uint8)
    head[~near_end] = rows_at[start[~near_end]]
    for r in np.flatnonzero(near_end).tolist():  # the last packets of the capture
        tail = data[int(start[r]):int(start[r]) + HEAD]
        head[r, :len(tail)] = tail
    return head.reshape(-1)


def leading_words(data: npt.NDArray[np.uint8], at: npt.NDArray[np.int64],
                   size: npt.NDArray[np.int64]
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The first 16 bytes of each payload as two big-endian 64-bit words (as int64), bytes
    past the payload's end zero: one 8-byte gather per word over an overlapping view of
    the capture, rather than one per byte."""
    last = len(data) - 8  # the last word that fits
    if last < 0:  # no packet here holds 16 bytes: the byte at a time path
        out = [np.zeros(len(at), np.int64), np.zeros(len(at), np.int64)]
        for b in range(16):
            byte = data[np.minimum(at + b, len(data) - 1)].astype(np.int64)
            out[b // 8] |= np.where(b < size, byte, 0) << (8 * (7 - b % 8))
        return out[0], out[1]
    view = overlap.words(data, ">u8")
    got = []
    for w in (0, 8):
        pos = at + w
        word = view[np.minimum(pos, last)].astype(np.uint64)
        short = pos > last  # the last bytes of the capture: shift into place
        if short.any():
            back = (pos[short] - last).astype(np.uint64)
            word[short] = word[short] << (back * np.uint64(8))
        keep = np.clip(size - w, 0, 8).astype(np.uint64)  # bytes of this word in the payload
        drop = (np.uint64(8) - keep) * np.uint64(8)
        mask = np.where(keep == 0, np.uint64(0),
                        (~np.uint64(0) >> drop) << drop)
        got.append((word & mask).view(np.int64))
    return got[0], got[1]


def _col(h: npt.NDArray[np.uint8], at: int, width: int) -> I64:
    """The big-endian field of ``width`` (2 or 4) bytes at ``at`` in every row of the header
    copy: one strided copy of those bytes, no index arrays."""
    return np.ascontiguousarray(h[:, at:at + width]).view(f">u{width}")[:, 0].astype(
        np.int64)


def decode_udp(index: PacketIndex) -> UdpBatch:
    """IPv4/UDP headers of every packet whose layout the batch decoder knows. Packets of one
    link layer with a 20-byte IPv4 header (nearly all) are read as fixed columns of the
    header copy; IP options take gathers at each packet's own offsets."""
    n = len(index)
    out = UdpBatch(n)
    if n == 0:
        return out
    length, link = index.length, index.link
    # the headers are read from a compact copy; offsets below are into it
    data = _heads(index.data, index.offset)
    h = data.reshape(n, HEAD)
    # where IPv4 starts, per link layer (-1: a layout left to the per-packet decoder)
    l3 = np.full(n, -1, np.int64)
    eth = link == ETHERNET
    etype = _col(h, 12, 2)
    l3[eth & (length >= 34) & (etype == ETH_IPV4)] = 14
    l3[eth & (length >= 38) & (etype == ETH_VLAN) & (_col(h, 16, 2) == ETH_IPV4)] = 18
    l3[((link == RAW) | (link == RAW_IPV4)) & (length >= 28)] = 0
    l3[(link == LINUX_SLL) & (length >= 44) & (_col(h, 14, 2) == ETH_IPV4)] = 16
    options: list[I64] = []
    for base in (14, 18, 0, 16):
        rows = np.flatnonzero(l3 == base)
        if not len(rows):
            continue
        whole = len(rows) == n
        g = h if whole else h[rows]
        ver_ihl = g[:, base]
        udp4 = (ver_ihl >> 4 == 4) & (g[:, base + 9] == UDP) \
            & ((_col(g, base + 6, 2) & 0x3FFF) == 0)  # no MF flag, offset 0: no fragment
        options.append(rows[udp4 & ((ver_ihl & 0x0F) > 5)])
        plain = udp4 & (ver_ihl & 0x0F == 5)
        total = _col(g, base + 2, 2)
        ulen = _col(g, base + 24, 2)
        payload = base + 28
        size = np.minimum(np.minimum(ulen - 8, total - 28), length[rows] - payload)
        plain &= (length[rows] >= payload) & (ulen >= 8) & (total >= 28) & (size >= 0)
        keep = np.flatnonzero(plain)
        if not len(keep):
            continue
        g = g[keep] if len(keep) < len(rows) else g
        idx, size = rows[keep], size[keep]
        out.taken[idx] = True
        out.src[idx] = _col(g, base + 12, 4)
        out.dst[idx] = _col(g, base + 16, 4)
        out.sport[idx] = _col(g, base + 20, 2)
        out.dport[idx] = _col(g, base + 22, 2)
        out.payload[idx] = index.offset[idx] + payload
        out.size[idx] = size
        first, second = leading_words(g.reshape(-1), np.arange(len(g)) * HEAD + payload, size)
        out.lead[idx, 0] = first
        out.lead[idx, 1] = second
    if options and len(idx := np.concatenate(options)):
        _with_options(index, data, idx, l3[idx], out)
    return out


def _with_options(index: PacketIndex, data: npt.NDArray[np.uint8], idx: I64, base: I64,
                  out: UdpBatch) -> None:
    """IPv4/UDP packets ``idx`` with IP options, their IPv4 header at ``base`` in each
    packet's row of the header copy ``data``: read by gathers at each one's offsets."""
    start = idx * HEAD
    l3 = start + base
    end = start + index.length[idx]
    ihl = (_u8(data, l3) & 0x0F) * 4
    keep = (l3 + ihl + 8 <= end) & (l3 + ihl + 8 <= start + HEAD)
    idx, l3, ihl, end, start = idx[keep], l3[keep], ihl[keep], end[keep], start[keep]
    l4 = l3 + ihl
    total = _be16(data, l3 + 2)
    ulen = _be16(data, l4 + 4)
    payload = l4 + 8
    size = np.minimum(np.minimum(ulen - 8, total - ihl - 8), end - payload)
    keep = (ulen >= 8) & (total >= ihl + 8) & (size >= 0)
    idx, l3, l4, payload, size, start = (idx[keep], l3[keep], l4[keep], payload[keep],
                                         size[keep], start[keep])
    out.taken[idx] = True
    out.src[idx] = _be32(data, l3 + 12)
    out.dst[idx] = _be32(data, l3 + 16)
    out.sport[idx] = _be16(data, l4)
    out.dport[idx] = _be16(data, l4 + 2)
    out.payload[idx] = index.offset[idx] + (payload - start)
    out.size[idx] = size
    # from the header copy where it holds them, else from the capture
    near = payload + 16 <= start + HEAD
    for rows, first, second in (
            (idx[near], *leading_words(data, payload[near], size[near])),
            (idx[~near], *leading_words(index.data, out.payload[idx[~near]], size[~near]))):
        out.lead[rows, 0] = first
        out.lead[rows, 1] = second


def rtp_like(index: PacketIndex, udp: UdpBatch) -> BOOL:
    """Taken packets whose payload can be RTP (RFC 3550 5.1: version 2, a full 12-byte
    header) between unprivileged ports, and not RTCP. SIP, STUN and DTLS never match:
    their first byte is never 0b10xxxxxx."""
    ok = udp.taken & (udp.size >= 12)
    ok &= (udp.sport >= MIN_MEDIA_PORT) & (udp.dport >= MIN_MEDIA_PORT)
    idx = np.nonzero(ok)[0]
    first = udp.lead[idx, 0]  # the payload's first bytes, from the header copy
    pt = (first >> 48) & 0x7F
    good = ((first >> 62) & 3 == 2) & ((pt < RTCP_PT_LOW) | (pt > RTCP_PT_HIGH))
    ok[idx[~good]] = False
    return ok


def rtp_fields(index: PacketIndex, at: I64) -> tuple[I64, I64, I64, I64, I64]:
    """(payload type, marker, sequence, timestamp, SSRC) of RTP headers at ``at``."""
    data = index.data
    b1 = _u8(data, at + 1)
    return b1 & 0x7F, b1 >> 7, _be16(data, at + 2), _be32(data, at + 4), _be32(data, at + 8)
