"""A whole-file packet index for batch analysis (``calltap stats``): every record's offset,
length, capture time and link type as numpy arrays over one buffer, so header fields can be
read for all packets at once instead of one packet at a time.

Classic pcap is memory-mapped and only its 16-byte record headers are walked. pcapng (and
anything else the streaming reader opens) is read through that reader, its frames copied
into one buffer.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from collections.abc import Generator
from typing import Any

import numpy as np
import numpy.typing as npt

from capture import overlap
from capture.errors import CaptureFormatError
from capture.pcapfile import MAX_RECORD, PCAP_NS, PCAP_US, close_capture, open_capture


class PacketIndex:
    """Packets of one capture file, in file order."""

    __slots__ = ("name", "data", "offset", "length", "ts_ns", "link", "truncated", "error",
                 "first", "_keep")

    def __init__(self, name: str, data: npt.NDArray[np.uint8], offset: npt.NDArray[np.int64],
                 length: npt.NDArray[np.int64], ts_ns: npt.NDArray[np.int64],
                 link: npt.NDArray[np.int64], truncated: bool, keep: Any) -> None:
        self.name = name
        self.data = data
        """Every byte of the file (or of its frames), as uint8."""
        self.offset = offset
        """Where each frame starts in ``data``."""
        self.length = length
        """Captured bytes of each frame."""
        self.ts_ns = ts_ns
        self.link = link
        """Link type of each frame (pcapng files may mix them)."""
        self.truncated = truncated
        """The file ends mid-record; every record before the cut is indexed."""
        self.error = ""
        """Why indexing stopped early at a corrupt record (every record before it is kept)."""
        self.first = 0
        """Position of the first packet in the whole file (windows of a long capture)."""
        self._keep = keep  # the mapping or buffer behind ``data``

    def __len__(self) -> int:
        return len(self.offset)

    def frame(self, i: int) -> bytes:
        start = int(self.offset[i])
        return self.data[start:start + int(self.length[i])].tobytes()

    def close(self) -> None:
        if isinstance(self._keep, mmap.mmap):
            self.data = np.zeros(0, np.uint8)
            self._keep.close()


def index_capture(path: str) -> PacketIndex:
    """Index a capture file; raises CaptureFormatError (one line, naming the file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            mappable = len(head) == 4 and struct.unpack("<I", head)[0] in (PCAP_US, PCAP_NS) \
                and f.seek(0, 2) > 24
    except OSError as exc:
        raise CaptureFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not mappable:
        return _index_stream(path)
    windows = index_windows(path, 1 << 62)  # the whole file in one window
    index = next(windows)
    windows.close()  # its frame lets go of the mapping, which the index now owns
    if index.error:
        index.close()
        raise CaptureFormatError(index.error)
    return index


def index_windows(path: str, window: int, first_window: int = 0
                  ) -> Generator[PacketIndex, None, None]:
    """A little-endian classic pcap, memory-mapped once, indexed ``window`` packets at a
    time: each PacketIndex covers the next packets (``first`` says where they start in the
    file's order) over the same mapping, so the index held at any time is bounded however
    long the capture. The first window holds ``first_window`` packets where that is given
    (a reader waiting for it starts sooner). Raises CaptureFormatError (one line, naming
    the file)."""
    try:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise CaptureFormatError(f"{path}: cannot read: {exc}") from None
    magic, major, _minor, _tz, _sig, _snap, network = struct.unpack_from("<IHHiIII", mm, 0)
    if major != 2:
        mm.close()
        raise CaptureFormatError(f"{path}: unsupported pcap version {major}")
    data = np.frombuffer(mm, dtype=np.uint8)
    u32 = struct.Struct("<I").unpack_from
    size = len(mm)
    frac_ns = 1 if magic == PCAP_NS else 1000
    off = 24
    first = 0
    lengths = _CapturedLengths(path)
    # the mapping closes when the last array over it goes
    while True:
        offsets = array("q")
        mark = offsets.append
        truncated = error = False
        bad = 0
        # libpcap's record lengths give the offsets at C speed; each is checked against the
        # record header it points at, and the walk below takes over where one disagrees
        want = first_window if first == 0 and first_window > 0 else window
        fast = lengths.offsets(data, off, want)
        if len(fast):
            offsets.frombytes(fast.tobytes())
            off = int(fast[-1]) + 16 + int(u32(mm, int(fast[-1]) + 8)[0])
        while off + 16 <= size and len(offsets) < want:
            incl = u32(mm, off + 8)[0]
            if incl > MAX_RECORD:
                error = True
                bad = incl
                break
            if off + 16 + incl > size:
                truncated = True
                break
            mark(off)
            off += 16 + incl
        done = truncated or error or off + 16 > size
        rec = np.frombuffer(offsets, dtype=np.int64) if offsets else np.zeros(0, np.int64)

        # each 16-byte record header copied whole (one row of an overlapping view), then
        # read as three little-endian words: seconds, fraction, captured length
        heads = overlap.rows(data, 16)[rec].view("<u4").astype(np.int64)
        index = PacketIndex(path, data, rec + 16, np.ascontiguousarray(heads[:, 2]),
                            heads[:, 0] * 1_000_000_000 + heads[:, 1] * frac_ns,
                            np.full(len(rec), network & 0xFFFF, dtype=np.int64),
                            done and (truncated or off != size), mm)
        index.first = first
        if error:
            index.error = f"{path}: record at byte {off} claims {bad} bytes"
        first += len(rec)
        yield index
        if done:
            return


# Records libpcap hands over per call when offsets are taken from it: its copy of the
# packets is transient (about 15 MB at 230 bytes a packet).
LENGTH_BATCH = 65536


class _CapturedLengths:
    """Record offsets of a classic pcap from libpcap's reading of it (pcapy-ng's
    next_batch gives each record's captured length); off at the first disagreement with
    the file, or where pcapy is missing."""

    def __init__(self, path: str) -> None:
        self._reader: Any = None
        try:
            import pcapy  # type: ignore[import-not-found]

            self._reader = pcapy.open_offline(path)
        except Exception:  # noqa: BLE001 - no pcapy, or libpcap refuses the file: walk it
            self._reader = None

    def offsets(self, data: npt.NDArray[np.uint8], start: int, count: int
                ) -> npt.NDArray[np.int64]:
        """Offsets of up to ``count`` records from ``start``, each one's header checked."""
        if self._reader is None:
            return np.zeros(0, np.int64)
        parts: list[npt.NDArray[np.int64]] = []
        at = start
        size = len(data)
        got = 0
        while got < count:
            try:
                _packets, meta = self._reader.next_batch(min(LENGTH_BATCH, count - got))
            except Exception:  # noqa: BLE001 - libpcap stopped at a bad record: walk on
                self._reader = None
                break
            if not meta:
                break
            caplen = np.frombuffer(meta, np.uint32).reshape(-1, 4)[:, 3].astype(np.int64)
            offs = at + np.concatenate(([0], np.cumsum(16 + caplen)[:-1]))
            fits = offs + 16 + caplen <= size
            inside = np.minimum(offs + 8, size - 4)
            incl = overlap.words(data, "<u4")[inside].astype(np.int64)
            bad = np.flatnonzero(~fits | (incl != caplen))
            if len(bad):  # from here on the file's own headers are walked
                parts.append(offs[:int(bad[0])])
                self._reader = None
                break
            parts.append(offs)
            got += len(offs)
            at = int(offs[-1] + 16 + caplen[-1])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _index_stream(path: str) -> PacketIndex:
    """Any other format the streaming reader opens: frames copied into one buffer."""
    reader = open_capture(path)
    buf = bytearray()
    offsets, lengths, stamps, links = array("q"), array("q"), array("q"), array("q")
    error = ""
    try:
        for ts, link, frame in reader:
            offsets.append(len(buf))
            lengths.append(len(frame))
            stamps.append(ts)
            links.append(link)
            buf += frame
    except CaptureFormatError as exc:
        error = str(exc)  # corruption mid-file: the packets before it still count
    except OSError as exc:
        raise CaptureFormatError(f"{path}: read failed: {exc.strerror or exc}") from None
    finally:
        close_capture(reader)
    data = np.frombuffer(bytes(buf), dtype=np.uint8)

    def arr(a: array[int]) -> npt.NDArray[np.int64]:
        return np.frombuffer(a, dtype=np.int64) if len(a) else np.zeros(0, np.int64)

    index = PacketIndex(path, data, arr(offsets), arr(lengths), arr(stamps), arr(links),
                        reader.truncated, buf)
    index.error = error
    return index
