"""Streaming reader for pcap (micro/nanosecond, both byte orders) and pcapng files.

The reader never holds more than one read chunk plus one record in memory, so a
file of any size is read as a stream. A file that ends mid-record keeps every
record before the cut and sets ``truncated``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from capture.errors import CaptureFormatError

# Bytes fetched per read(): large enough to amortise the syscall, small enough to ignore.
READ_CHUNK = 1 << 20
# Largest record accepted; libpcap's own MAXIMUM_SNAPLEN. A bigger length means corruption.
MAX_RECORD = 262_144
# Largest pcapng block accepted (a packet plus generous options).
MAX_BLOCK = MAX_RECORD + 65_536
# Interfaces per pcapng section; real files have a handful, hostile ones could claim millions.
MAX_INTERFACES = 4096

PCAP_US = 0xA1B2C3D4
PCAP_NS = 0xA1B23C4D
NG_SHB = 0x0A0D0D0A
NG_BOM = 0x1A2B3C4D

_GLOBAL_LE = struct.Struct("<IHHiIII")
_GLOBAL_BE = struct.Struct(">IHHiIII")
_REC_LE = struct.Struct("<IIII")
_REC_BE = struct.Struct(">IIII")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct(">I")
# An Enhanced Packet Block's interface, timestamp (high, low) and captured length, read in
# one go: four reads took a fifth of reading a packet.
_EPB_LE = struct.Struct("<IIII")
_EPB_BE = struct.Struct(">IIII")

Packet = tuple[int, int, bytes]
"""(capture time in integer nanoseconds, link type, frame bytes)."""


class CaptureReader:
    """Iterates the packets of one capture file as ``(ts_ns, linktype, frame)``."""

    def __init__(self, fileobj: BinaryIO, name: str) -> None:
        self.name = name
        self._f = fileobj
        self._buf = b""
        self._off = 0
        self.bytes_read = 0
        """Bytes consumed from the file so far (for progress)."""
        self.truncated = False
        """True when the file ended in the middle of a record."""
        self.skipped_blocks = 0
        """pcapng blocks skipped (unknown types, packets on undeclared interfaces)."""
        head = self._need(4)
        if head is None:
            raise CaptureFormatError(f"{name}: empty file or shorter than a capture header")
        magic_le = _U32_LE.unpack_from(head, 0)[0]
        if magic_le == NG_SHB:
            self.format = "pcapng"
        elif magic_le in (PCAP_US, PCAP_NS) or _U32_BE.unpack_from(head, 0)[0] in (
            PCAP_US,
            PCAP_NS,
        ):
            self.format = "pcap"
        else:
            raise CaptureFormatError(
                f"{name}: not a pcap or pcapng file (first bytes {bytes(head[:4]).hex()})"
            )
        if self.format == "pcap":
            self._header = self._pcap_header()
        elif self._need(28) is None:  # smallest Section Header Block
            raise CaptureFormatError(f"{name}: pcapng section header is truncated")

    def _need(self, n: int) -> memoryview | None:
        """Make ``n`` bytes available at the read offset; None at end of file."""
        avail = len(self._buf) - self._off
        if avail < n:
            parts = [self._buf[self._off :]]
            while avail < n:
                chunk = self._f.read(max(READ_CHUNK, n - avail))
                if not chunk:
                    self._buf = b"".join(parts)
                    self._off = 0
                    return None
                parts.append(chunk)
                avail += len(chunk)
            self._buf = b"".join(parts)
            self._off = 0
        return memoryview(self._buf)[self._off : self._off + n]

    def _take(self, n: int) -> memoryview | None:
        view = self._need(n)
        if view is not None:
            self._off += n
            self.bytes_read += n
        return view

    def __iter__(self) -> Iterator[Packet]:
        if self.format == "pcap":
            return self._pcap()
        return self._pcapng()

    def _pcap_header(self) -> tuple[struct.Struct, int, int]:
        """Read the pcap global header: (record struct, link type, ns per fraction unit)."""
        head = self._take(24)
        if head is None:
            raise CaptureFormatError(f"{self.name}: pcap global header is truncated")
        magic = _U32_LE.unpack_from(head, 0)[0]
        if magic in (PCAP_US, PCAP_NS):
            glob, rec = _GLOBAL_LE, _REC_LE
        else:
            glob, rec = _GLOBAL_BE, _REC_BE
            magic = _U32_BE.unpack_from(head, 0)[0]
        _m, major, _minor, _tz, _sig, _snap, network = glob.unpack_from(head, 0)
        if major != 2:
            raise CaptureFormatError(f"{self.name}: unsupported pcap version {major}")
        # The top bits carry FCS information (pcap-savefile(5)); the link type is the low 16.
        return rec, network & 0xFFFF, 1 if magic == PCAP_NS else 1000

    def _pcap(self) -> Iterator[Packet]:
        rec, linktype, frac_ns = self._header
        unpack = rec.unpack_from
        while True:
            # Fast path: whole records inside the current chunk, sliced straight from it.
            buf, off = self._buf, self._off
            limit = len(buf)
            while off + 16 <= limit:
                sec, frac, incl, _orig = unpack(buf, off)
                end = off + 16 + incl
                if end > limit or incl > MAX_RECORD:
                    break
                self.bytes_read += end - off
                self._off = end
                yield sec * 1_000_000_000 + frac * frac_ns, linktype, buf[off + 16 : end]
                off = end
            hdr = self._take(16)
            if hdr is None:
                self.truncated = len(self._buf) - self._off > 0
                return
            sec, frac, incl, _orig = unpack(hdr, 0)
            if incl > MAX_RECORD:
                raise CaptureFormatError(
                    f"{self.name}: record at byte {self.bytes_read - 16} claims {incl} bytes"
                )
            data = self._take(incl)
            if data is None:
                self.truncated = True
                return
            yield sec * 1_000_000_000 + frac * frac_ns, linktype, bytes(data)

    def _pcapng(self) -> Iterator[Packet]:
        u32 = _U32_LE
        ifaces: list[tuple[int, int, int]] = []  # (linktype, ts units per second, offset s)
        while True:
            head = self._need(12)
            if head is None:
                self.truncated = len(self._buf) - self._off > 0
                return
            btype_le = _U32_LE.unpack_from(head, 0)[0]
            if btype_le == NG_SHB:
                bom = _U32_LE.unpack_from(head, 8)[0]
                if bom == NG_BOM:
                    u32 = _U32_LE
                elif _U32_BE.unpack_from(head, 8)[0] == NG_BOM:
                    u32 = _U32_BE
                else:
                    raise CaptureFormatError(
                        f"{self.name}: pcapng section at byte {self.bytes_read} has a bad "
                        "byte-order magic"
                    )
                ifaces = []
            btype = u32.unpack_from(head, 0)[0]
            blen = u32.unpack_from(head, 4)[0]
            if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                raise CaptureFormatError(
                    f"{self.name}: pcapng block at byte {self.bytes_read} has length {blen}"
                )
            block = self._take(blen)
            if block is None:
                self.truncated = True
                return
            if btype == 1:  # Interface Description Block
                if len(ifaces) >= MAX_INTERFACES:
                    raise CaptureFormatError(f"{self.name}: more than {MAX_INTERFACES} interfaces")
                ifaces.append(_parse_idb(block, u32, self.name))
            elif btype in (6, 2):  # Enhanced Packet Block, or the obsolete Packet Block
                # Same layout; the old block's interface id is 16 bits followed by a drop count.
                iface, hi, lo, caplen = (_EPB_LE if u32 is _U32_LE else _EPB_BE).unpack_from(
                    block, 8)
                if btype == 2:
                    iface = struct.unpack_from(u32.format[0] + "H", block, 8)[0]
                if iface >= len(ifaces) or 28 + caplen > blen:
                    self.skipped_blocks += 1
                    continue
                link, units, offset = ifaces[iface]
                ts = ((hi << 32) | lo) * 1_000_000_000 // units + offset * 1_000_000_000
                yield ts, link, bytes(block[28 : 28 + caplen])
            elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
                if not ifaces:
                    self.skipped_blocks += 1
                    continue
                orig = u32.unpack_from(block, 8)[0]
                yield 0, ifaces[0][0], bytes(block[12 : min(12 + orig, blen - 4)])


def _parse_idb(block: memoryview, u32: struct.Struct, name: str) -> tuple[int, int, int]:
    """Link type, timestamp units per second and offset of one IDB (pcapng section 4.2)."""
    half = struct.Struct(u32.format[0] + "H")
    linktype = half.unpack_from(block, 8)[0]
    units = 1_000_000
    offset = 0
    pos, end = 16, len(block) - 4
    while pos + 4 <= end:
        code = half.unpack_from(block, pos)[0]
        olen = half.unpack_from(block, pos + 2)[0]
        if code == 0:
            break
        val = block[pos + 4 : pos + 4 + olen]
        if code == 9 and olen >= 1:  # if_tsresol
            res = val[0]
            units = 2 ** (res & 0x7F) if res & 0x80 else 10 ** min(res, 18)
        elif code == 14 and olen == 8:  # if_tsoffset, seconds
            offset = struct.unpack_from(u32.format[0] + "q", val, 0)[0]
        pos += 4 + ((olen + 3) & ~3)
    return linktype, units, offset


def open_capture(path: str) -> CaptureReader:
    """Open a capture file; raises CaptureFormatError (one line, naming the file)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - the reader owns the handle for its lifetime
    except OSError as exc:
        raise CaptureFormatError(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        return CaptureReader(f, path)
    except CaptureFormatError:
        f.close()
        raise
    except OSError as exc:
        f.close()
        raise CaptureFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None


def close_capture(reader: CaptureReader) -> None:
    """Close the file behind a reader."""
    reader._f.close()
