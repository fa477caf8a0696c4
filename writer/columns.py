"""A call's media as columns: capture time, flow and where each payload lies in one byte
buffer (a memory-mapped spool file), plus the RTP fixed header of every packet parsed at
once (RFC 3550 section 5.1), with the same checks and messages as ``writer.rtp.parse_rtp``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from capture import overlap
from capture.spool import REC
from writer.errors import SpoolError

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

# Index 0 is "parsed"; the rest are parse_rtp's messages, so drops count the same reasons.
RTP_ERRORS = (
    "",
    "shorter than the 12-byte RTP header",
    "RTP version is not 2",
    "header extension runs past the packet",
    "padding flag set with a zero padding count",
    "CSRC list, extension or padding overrun the packet",
    "payload type in the RTCP range 72-76",
)
_HDR = np.arange(12)


@dataclass(frozen=True)
class MediaColumns:
    """Every media packet of a call, in capture order."""

    ts: I64
    """Capture time, ns."""
    flow: I64
    """Index into the call's flows."""
    off: I64
    """Offset of the UDP payload in ``data``."""
    length: I64
    """Its length."""
    data: U8
    """The bytes the offsets point into."""

    def __len__(self) -> int:
        return len(self.ts)

    def payload(self, i: int) -> bytes:
        o = int(self.off[i])
        return self.data[o:o + int(self.length[i])].tobytes()


@dataclass(frozen=True)
class CaptureMedia:
    """A call's media as places in a capture file (cheap to hand to another process, which
    maps the file itself), plus payloads that are not in the file as they are."""

    path: str
    ts: I64
    flow: I64
    off: I64
    """Where each payload lies in the file, or, at and past ``EXTRA``, in ``extra``."""
    length: I64
    extra: bytes

    def columns(self) -> MediaColumns:
        """The media as columns: straight over the mapped file when every payload is in it
        (no copy), else compact, the payloads gathered from the file."""
        if not self.extra:
            return MediaColumns(self.ts, self.flow, self.off, self.length,
                                self._mapped(self.off, self.length))
        inside = self.off < EXTRA
        ln = np.where(inside, self.length, 0)
        bounds = np.concatenate(([0], np.cumsum(ln)))
        total = int(bounds[-1])
        data = np.empty(total + len(self.extra), np.uint8)
        if total:
            gather = np.repeat(self.off - bounds[:-1], ln) + np.arange(total)
            data[:total] = self._mapped(self.off[inside], self.length[inside])[gather]
        data[total:] = np.frombuffer(self.extra, np.uint8)
        off = np.where(inside, bounds[:-1], total + self.off - EXTRA)
        return MediaColumns(self.ts, self.flow, off, self.length, data)

    def _mapped(self, off: I64, length: I64) -> U8:
        if not len(off):
            return mapped_capture(self.path, 0, 0)
        return mapped_capture(self.path, int(off.min()), int((off + length).max()))


# A writer process renders one import's calls at a time; a second entry covers the switch to
# the next import without mapping the finished one again.
MAPPED_CAPTURES = 2


class _Mapping:
    """One mapped capture and the byte range already made resident in it."""

    __slots__ = ("mm", "data", "lo", "hi")

    def __init__(self, mm: mmap.mmap) -> None:
        self.mm = mm
        self.data: U8 = np.frombuffer(mm, np.uint8)
        self.lo = self.hi = 0


_mapped: OrderedDict[tuple[str, int, int, int], _Mapping] = OrderedDict()
# Linux 5.14 madvise(2) advice: map the cached pages of a range in one call; older kernels
# refuse it and the pages fault in one by one as before.
_MADV_POPULATE_READ = 22


def mapped_capture(path: str, lo: int, hi: int) -> U8:
    """The capture file ``path`` mapped read-only, with bytes ``lo`` to ``hi`` (what one
    call reads) made resident. The mapping is kept across the calls of one import: the
    calls of a capture interleave, so each touches pages across much of the file, and a
    fresh mapping per call faulted every page in again. A file replaced or grown since it
    was mapped is mapped again."""
    st = os.stat(path)
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    m = _mapped.get(key)
    if m is None:
        with open(path, "rb") as f:
            m = _Mapping(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        _mapped[key] = m
        while len(_mapped) > MAPPED_CAPTURES:
            _mapped.popitem(last=False)
    _mapped.move_to_end(key)
    lo -= lo % mmap.PAGESIZE
    hi = min(hi, len(m.mm))
    if hi <= m.lo or lo >= m.hi:
        _populate(m.mm, lo, hi)
        m.lo, m.hi = lo, hi
    else:
        _populate(m.mm, lo, m.lo)
        _populate(m.mm, m.hi, hi)
        m.lo, m.hi = min(lo, m.lo), max(hi, m.hi)
    return m.data


def _populate(mm: mmap.mmap, lo: int, hi: int) -> None:
    if hi > lo:
        with contextlib.suppress(OSError):
            mm.madvise(_MADV_POPULATE_READ, lo, hi - lo)


# Offsets at and past this point into CaptureMedia.extra, not the file (no capture file
# calltap maps is this large).
EXTRA = 1 << 60

EMPTY_COLUMNS = MediaColumns(np.zeros(0, np.int64), np.zeros(0, np.int64),
                             np.zeros(0, np.int64), np.zeros(0, np.int64),
                             np.zeros(0, np.uint8))


class SealedSpool(NamedTuple):
    """A sealed spool file and the key that opens it (capture.spool)."""

    path: str
    key: bytes


def spool_columns(path: str | None, key: bytes | None = None) -> MediaColumns:
    """A spool file's records as columns over the memory-mapped file (a sealed one's,
    with ``key``, over its records opened in memory); a torn last record (a crash
    mid-write) is left out."""
    if path is None:
        return EMPTY_COLUMNS
    try:
        size = _size(path)
        if size == 0:
            return EMPTY_COLUMNS
        data: U8 = np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as exc:
        raise SpoolError(f"{path}: cannot read spool: {exc.strerror or exc}") from None
    if key is not None:
        from capture.errors import CaptureError
        from capture.spool import open_frames

        try:
            plain, _used = open_frames(data.data, key, path)
        except CaptureError as exc:
            raise SpoolError(str(exc)) from None
        data = np.frombuffer(plain, np.uint8)
        size = len(plain)
        if not size:
            return EMPTY_COLUMNS
    at, length = _records(data, size)
    head = at[:, None] + _REC_BYTES  # every record's header bytes, one row each
    fields = data[head] if len(at) else np.zeros((0, REC.size), np.uint8)
    ts = fields[:, :8].copy().view("<i8").ravel().astype(np.int64)
    flow = fields[:, 8].astype(np.int64) | fields[:, 9].astype(np.int64) << 8
    return MediaColumns(ts, flow, at + REC.size, length, data)


_REC_BYTES = np.arange(REC.size)
_LENGTH = struct.Struct("<H")  # a record's payload length, its header's last field
# A run of records of one size is looked for once RUN_AFTER records in a row have had one
# size, in windows growing from RUN_WINDOW to RUN_PROBE records; a run shorter than RUN_MIN
# is read one record at a time. Payloads whose size changes every packet (variable-rate
# codecs) never pay for a look.
RUN_AFTER = 8
RUN_AFTER_MAX = 256  # after each look that found no run, twice as many before the next
RUN_WINDOW = 64
RUN_PROBE = 4096
RUN_MIN = 16


def _records(data: U8, size: int) -> tuple[I64, I64]:
    """Where each whole record of a spool starts, and its payload's length. A spool's
    records (capture.spool: time, flow, length, payload) are nearly all one size in long
    runs (a stream's packets); each run is found and taken at once: reading the records
    one by one was a tenth of writing a G.711 call."""
    head = REC.size
    starts: list[I64] = []
    lengths: list[I64] = []
    one_at: list[int] = []
    one_len: list[int] = []
    length_at = _LENGTH.unpack_from
    buf = data.data
    plain = data.view(np.ndarray)  # a memory map's slices cost a Python call each
    pos = 0
    prev = -1
    same = 0
    after = RUN_AFTER
    while pos + head <= size:
        n = length_at(buf, pos + head - 2)[0]
        step = head + n
        if pos + step > size:
            break  # torn: the last record, cut short by a crash mid-write
        if n != prev:
            prev, same = n, 0
        else:
            same += 1
            if same >= after and pos + step * RUN_MIN <= size:
                same = 0
                run = _run(plain, pos, step, n, size)
                after = RUN_AFTER if run >= RUN_MIN else min(after * 2, RUN_AFTER_MAX)
                if run >= RUN_MIN:
                    if one_at:
                        starts.append(np.array(one_at, np.int64))
                        lengths.append(np.array(one_len, np.int64))
                        one_at, one_len = [], []
                    starts.append(pos + step * np.arange(run, dtype=np.int64))
                    lengths.append(np.full(run, n, np.int64))
                    pos += run * step
                    continue
        one_at.append(pos)
        one_len.append(n)
        pos += step
    starts.append(np.array(one_at, np.int64))
    lengths.append(np.array(one_len, np.int64))
    return np.concatenate(starts), np.concatenate(lengths)


def _run(data: U8, pos: int, step: int, n: int, size: int) -> int:
    """How many whole records of ``step`` bytes with payload length ``n`` follow one
    another from ``pos`` (the first is one)."""
    run, window = 0, RUN_WINDOW
    while True:
        at = pos + run * step
        fit = min((size - at) // step, window)
        if fit <= 0:
            return run
        first = at + REC.size - 2
        lo = data[first:first + (fit - 1) * step + 1:step]
        hi = data[first + 1:first + (fit - 1) * step + 2:step]
        same = (lo.astype(np.int64) | hi.astype(np.int64) << 8) == n
        if not bool(same.all()):
            return run + int(np.argmin(same))
        run += fit
        window = min(window * 4, RUN_PROBE)


def _size(path: str) -> int:
    import os

    return os.path.getsize(path)


@dataclass(frozen=True)
class RtpColumns:
    """The RTP fixed header of each packet; where ``error`` is not 0 the rest is undefined."""

    error: I64
    """0, or an index into RTP_ERRORS."""
    pt: I64
    marker: I64
    seq: I64
    ts: I64
    ssrc: I64
    start: I64
    """Payload start (after CSRCs and the header extension), relative to the packet."""
    end: I64
    """Payload end (padding cut), relative to the packet."""


# RFC 3550 5.1: the fixed header's fields, read from each packet's 12 bytes at once.
_FIXED = np.dtype([("b0", "u1"), ("b1", "u1"), ("seq", ">u2"), ("ts", ">u4"),
                   ("ssrc", ">u4")])


def _fixed_header(data: U8, off: I64) -> tuple[I64, I64, I64, I64, I64]:
    """(first byte, second byte, sequence, timestamp, SSRC) of the headers at ``off``: each
    one's 12 bytes copied as a row of an overlapping view of ``data``; bytes past the end
    of ``data`` read as its last byte (those packets are too short to be RTP)."""
    fits = off + 12 <= len(data)
    if len(data) >= 12 and fits.all():
        r = overlap.rows(data, 12)[off].view(_FIXED)[:, 0]
        return (r["b0"].astype(np.int64), r["b1"].astype(np.int64),
                r["seq"].astype(np.int64), r["ts"].astype(np.int64),
                r["ssrc"].astype(np.int64))
    h = data[np.minimum(off[:, None] + _HDR, len(data) - 1)].astype(np.int64)
    return (h[:, 0], h[:, 1], (h[:, 2] << 8) | h[:, 3],
            (h[:, 4] << 24) | (h[:, 5] << 16) | (h[:, 6] << 8) | h[:, 7],
            (h[:, 8] << 24) | (h[:, 9] << 16) | (h[:, 10] << 8) | h[:, 11])


def parse_rtp_columns(m: MediaColumns) -> RtpColumns:
    """``writer.rtp.parse_rtp`` for every packet at once."""
    n = len(m)
    data, off, ln = m.data, m.off, m.length
    if n == 0 or len(data) == 0:
        z = np.zeros(n, np.int64)
        return RtpColumns(np.where(ln < 12, 1, 0) if n else z, z, z, z, z, z, z, z)
    last = len(data) - 1
    b0, b1, seq, rts, ssrc = _fixed_header(data, off)
    error = np.zeros(n, np.int64)
    short = ln < 12
    error[short] = 1
    error[(error == 0) & (b0 >> 6 != 2)] = 2
    start = 12 + (b0 & 0x0F) * 4
    ext = (b0 & 0x10) != 0
    ext_past = ext & (ln < start + 4)
    error[(error == 0) & ext_past] = 3
    with_ext = np.flatnonzero(ext & (error == 0))
    if len(with_ext):
        at = off[with_ext] + start[with_ext]
        words = (data[np.minimum(at + 2, last)].astype(np.int64) << 8) \
            | data[np.minimum(at + 3, last)]
        start[with_ext] += 4 + words * 4
    end = ln.copy()
    padded = np.flatnonzero(((b0 & 0x20) != 0) & (error == 0))
    if len(padded):
        pad = data[np.maximum(off[padded] + ln[padded] - 1, 0)].astype(np.int64)
        zero = padded[pad == 0]
        error[zero] = 4
        end[padded] -= pad
    error[(error == 0) & (start > end)] = 5
    pt = b1 & 0x7F
    error[(error == 0) & (pt >= 72) & (pt <= 76)] = 6
    return RtpColumns(error, pt, b1 >> 7, seq, rts, ssrc, start, end)
