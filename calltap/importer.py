"""Offline import: a shell around the Recorder (correlate.recorder) that reads capture
files, spools each call's media and writes finished calls with a pool of writer processes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from calltap.catalog import CatalogError, Prepared, SqliteCatalog, entry_of, open_catalog, prepare
from calltap.config import Config
from calltap.heap import keep_freed_blocks
from calltap.policyfile import PolicyError, load_policy
from capture.errors import CaptureError
from capture.index import PacketIndex, index_windows
from capture.pcapfile import PCAP_NS, PCAP_US, close_capture, open_capture
from capture.spool import SpoolSet
from capture.vector import UdpBatch, decode_udp
from correlate.call import Call
from correlate.events import CallEnded
from correlate.policy import Policy
from correlate.record import CallRecord
from correlate.recorder import Recorder, Settings
from correlate.router import SpoolSink
from writer import translog
from writer.columns import EXTRA, CaptureMedia, MediaColumns, SealedSpool, spool_columns
from writer.job import Media, media_columns, write_call
from writer.options import WriteOptions
from writer.output import sync_filesystem
from writer.srtp import parse_key_spec
from writer.timefmt import rfc3339
from writer.timestamps import TimestampError, stamp_new

if TYPE_CHECKING:
    from writer.mediajoin import MediaJoiner

NS = 1_000_000_000
I64 = npt.NDArray[np.int64]
# Calls listed in the end-of-import table; the index holds them all, the table is a glance.
MAX_TABLE_ROWS = 1000
# Error lines kept for the end of an import; the rest are counted.
MAX_MESSAGES = 100
# Packets of a mapped capture indexed at a time: about 100 bytes of columns each (35 MB),
# so a long capture costs no more memory than a short one.
INDEX_WINDOW = 350_000
# The first window is small: the recorder starts on it at once instead of waiting for a
# whole window to be indexed and decoded (a quarter of a second on the benchmark capture).
FIRST_INDEX_WINDOW = 20_000
# How much lower the writer processes' scheduling priority is than this process's (nice).
# This process reads the capture and everything after it waits for it, while the writers'
# bounded queue stops it whenever they fall behind, so they always get their turn: on two
# cores, 1,259 short calls imported 5% sooner. A live capture on the same host keeps its
# priority over an import's writers too.
WRITER_NICE = 10
# Batches of finished calls queued per writer process; each holds call records, their
# media is on disk.
MAX_PENDING_WRITES = 4
# Finished calls handed to a writer process together, up to this many or this many media
# packets: each hand-over costs this process a pickle, a pipe write and a wake-up of the
# pool's threads, about as much as parsing a short call's SIP. A long call goes alone.
# (1,259 short calls: 32 a batch took 5% less time than 16; 64 no better within the noise.)
WRITE_BATCH_CALLS = 32
WRITE_BATCH_PACKETS = 2_000
# The longest a finished call waits in an unfilled batch (looked at as packets are fed), so
# writers are not left idle while calls trickle in.
WRITE_BATCH_WAIT_S = 0.05
# Bytes of spool a media packet takes, for a spooled call's share of a batch (a 20 ms
# G.711 packet with its record header: 12 + 12 + 160).
SPOOL_BYTES_PER_PACKET = 184
# Written calls indexed in the catalog per transaction, and the longest they wait for it.
CATALOG_BATCH = 500
CATALOG_DELAY_S = 0.5
# Packets read from a streamed capture (pcapng) and fed to the Recorder at a time: between
# batches the calls that ended go to the writers, and the progress bar and a SIGHUP reload
# are looked at. At 8,192 the writers waited for most of a short capture to be parsed
# before their first call (sipp-branch-scenario: 2.21 s against 2.04 s at 1,024).
PROGRESS_EVERY = 1024
# The first batch is smaller, doubling up to PROGRESS_EVERY: the writers start on the first
# calls that end instead of waiting for 1,024 packets to be parsed.
FIRST_FEED = 128


def options_from(cfg: Config) -> WriteOptions:
    """The writer's options from the configuration (the policy's choices for a call travel
    in its CallRecord)."""
    return WriteOptions(
        audio_format=cfg.audio_format, layout=cfg.layout, comfort_noise=cfg.comfort_noise,
        relay_hop=cfg.relay_hop, srtp_keys=tuple(parse_key_spec(spec) for spec in cfg.srtp_keys),
        jitter_buffer_mode=cfg.jitter_buffer, jitter_buffer_ms=cfg.jitter_buffer_ms,
        jitter_buffer_max_ms=cfg.jitter_buffer_max_ms, signing_key=cfg.signing_key,
        pci_dtmf=cfg.pci_dtmf, encrypt_to=cfg.encrypt_to, key_store=cfg.key_store,
        tsa_url=cfg.tsa_url,
        recorder_name=cfg.recorder_name)


def settings_from(cfg: Config) -> Settings:
    """The Recorder's timeouts from the configuration."""
    return Settings(inactivity_ns=int(cfg.inactivity_timeout * NS),
                    linger_ns=int(cfg.linger * NS),
                    unsignalled_ns=int(cfg.unsignalled_timeout * NS),
                    dedup_window_ns=int(cfg.dedup_window * NS),
                    join_legs=cfg.join_legs, join_header=cfg.join_header)


def _decoded_ahead(windows: Iterator[PacketIndex]
                   ) -> Generator[tuple[PacketIndex, UdpBatch], None, None]:
    """Each window of the index with its IPv4/UDP columns, the next one indexed and decoded
    on a thread while the recorder goes through this one: numpy lets go of the interpreter
    for most of that work, so it runs on the other core. Two windows are held at a time."""

    def ahead() -> tuple[PacketIndex, UdpBatch] | None:
        index = next(windows, None)
        return None if index is None else (index, decode_udp(index))

    with ThreadPoolExecutor(1, thread_name_prefix="index") as pool:
        fut = pool.submit(ahead)
        while True:
            got = fut.result()
            if got is None:
                return
            fut = pool.submit(ahead)
            yield got


def _mappable(path: str) -> bool:
    """A little-endian classic pcap (what index_capture memory-maps)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            return len(head) == 4 and int.from_bytes(head, "little") in (PCAP_US, PCAP_NS) \
                and f.seek(0, 2) > 24
    except OSError:
        return False


def _joined(spool: str | None, key: bytes | None, after: CaptureMedia
            ) -> CaptureMedia | MediaColumns:
    """A call's spooled media (from earlier files) followed by ``after``."""
    if spool is None:
        return after
    first = spool_columns(spool, key)
    more = after.columns()
    data = np.concatenate((np.asarray(first.data), more.data))
    return MediaColumns(np.concatenate((first.ts, more.ts)),
                        np.concatenate((first.flow, more.flow)),
                        np.concatenate((first.off, more.off + len(first.data))),
                        np.concatenate((first.length, more.length)), data)


class _Columns:
    """Import's media sink for a mapped capture: which (call, flow) slot each packet went
    to (no spool copy), kept per call as places in the file once a window of the index is
    done; and as bytes the few payloads that are not in the file as they are (tunnelled,
    reassembled, paused, HEP). Handed to a writer as CaptureMedia."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.position = 0
        self.udp: UdpBatch | None = None
        self._index: PacketIndex | None = None
        self._slot_of = np.zeros(0, np.int32)
        self._seq = 0
        self._slot_flow: list[int] = []
        self._slot_serial: list[int] = []
        self._slots: dict[int, list[int]] = {}
        self._first: dict[int, int] = {}
        self._chunks: dict[int, list[tuple[I64, I64, I64, I64, I64]]] = {}
        self._extra: dict[int, list[tuple[int, int, int, int, bytes]]] = {}

    def add(self, call: Call, ts_ns: int, flow: int, payload: bytes) -> None:
        self._seq += 1
        self._extra.setdefault(call.serial, []).append(
            (self.position, self._seq, ts_ns, flow, payload))

    def window(self, index: PacketIndex, udp: UdpBatch) -> None:
        self._close_window()
        self._index, self.udp = index, udp
        self._slot_of = np.full(len(index), -1, np.int32)

    def slot(self, call: Call, flow: int) -> int:
        slot = len(self._slot_flow)
        self._slot_flow.append(flow)
        self._slot_serial.append(call.serial)
        self._slots.setdefault(call.serial, []).append(slot)
        self._first.setdefault(call.serial, self.position)
        return slot

    def assign(self, packets: I64, slots: I64) -> None:
        self._slot_of[packets] = slots

    def slots_of(self, call: Call) -> list[int]:
        return self._slots.get(call.serial, [])

    def open_calls(self) -> list[int]:
        return sorted(set(self._slots) | set(self._extra) | set(self._chunks))

    def _rows(self, rows: I64) -> tuple[I64, I64, I64, I64, I64]:
        """(file position, capture time, payload offset, length, flow) of window rows."""
        index, udp = self._index, self.udp
        assert index is not None and udp is not None
        flows = np.array(self._slot_flow, np.int64)[self._slot_of[rows]]
        return (rows + index.first, index.ts_ns[rows], udp.payload[rows], udp.size[rows],
                flows)

    def _close_window(self) -> None:
        """The window is done: its packets become places in the file, per call."""
        if self._index is None:
            return
        rows = np.flatnonzero(self._slot_of >= 0).astype(np.int64)
        if len(rows):
            slots = self._slot_of[rows]
            # stable sorts of 16-bit keys are radix sorts: ten times a 32-bit key's
            order = np.argsort(slots.astype(np.int16) if len(self._slot_flow) < 1 << 15
                               else slots, kind="stable")
            rows, slots = rows[order], slots[order]
            cut = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
            for a, b in zip(cut.tolist(), np.r_[cut[1:], len(rows)].tolist(), strict=True):
                serial = self._slot_serial[int(slots[a])]
                self._chunks.setdefault(serial, []).append(self._rows(rows[a:b]))
        self._index = None
        self._slot_of = np.zeros(0, np.int32)

    def take(self, serial: int) -> CaptureMedia | None:
        """The call's media in the order it was captured (its held packets where the
        Recorder added them), as places in the file; None without any."""
        slots = self._slots.pop(serial, [])
        first = self._first.pop(serial, 0)
        parts = self._chunks.pop(serial, [])
        extra = self._extra.pop(serial, [])
        if slots and self._index is not None:
            lo = max(0, first - self._index.first)
            part = self._slot_of[lo:]
            mine = part == slots[0] if len(slots) == 1 else np.isin(part, slots)
            rows = np.flatnonzero(mine).astype(np.int64) + lo
            if len(rows):
                parts.append(self._rows(rows))
                self._slot_of[rows] = -1  # taken: not again when the window closes
        if not parts and not extra:
            return None
        z = np.zeros(0, np.int64)
        pos, ts, off, ln, flow = (np.concatenate([p[k] for p in parts] + [z])
                                  for k in range(5))
        seq = np.zeros(len(pos), np.int64)
        blob = b""
        if extra:
            blob = b"".join(e[4] for e in extra)
            e_len = np.array([len(e[4]) for e in extra], np.int64)
            e_off = EXTRA + np.concatenate(([0], np.cumsum(e_len)[:-1]))
            pos = np.concatenate((pos, np.array([e[0] for e in extra], np.int64)))
            seq = np.concatenate((seq, np.array([e[1] for e in extra], np.int64)))
            ts = np.concatenate((ts, np.array([e[2] for e in extra], np.int64)))
            flow = np.concatenate((flow, np.array([e[3] for e in extra], np.int64)))
            ln = np.concatenate((ln, e_len))
            off = np.concatenate((off, e_off))
        order = np.lexsort((seq, pos))
        return CaptureMedia(self.path, ts[order], flow[order], off[order], ln[order], blob)


Written = tuple[Prepared, dict[str, int], bool]
"""A call written: its catalog row (whose last column is its index entry), its media
packets not used by reason, and whether it has audio."""
Job = tuple[CallRecord, Media | list[Media]]


class WriteFailed(Exception):
    """A call a writer process could not write (its error's text: any exception pickles
    back as this)."""


def _write(record: CallRecord, spool: Media | list[Media], out: str,
           options: WriteOptions) -> Written:
    """A call written, and its catalog row made in the same (writer) process: the import's
    own process, which reads the capture, then only inserts it."""
    result = write_call(record, spool, out, options)
    # the entry and search fields are in the row: not sent back a second time
    return prepare(result.entry, result.search), result.drops, bool(result.entry["audio"])


def _write_batch(jobs: list[Job], out: str, options: WriteOptions
                 ) -> list[Written | WriteFailed]:
    """Calls written one after another in a writer process; one that fails does not stop
    the others."""
    done: list[Written | WriteFailed] = []
    for record, spool in jobs:
        try:
            done.append(_write(record, spool, out, options))
        except Exception as exc:  # noqa: BLE001 - one bad call must not end the import
            done.append(WriteFailed(str(exc)))
    return done


def _packets(media: Media | list[Media]) -> int:
    """About how many media packets a call has (its share of a write batch)."""
    if isinstance(media, list):
        return sum(_packets(m) for m in media)
    if isinstance(media, str | SealedSpool):
        try:
            size = os.path.getsize(media if isinstance(media, str) else media.path)
        except OSError:
            return 0
        return size // SPOOL_BYTES_PER_PACKET
    return len(media.ts) if isinstance(media, CaptureMedia) else len(media or ())


class Importer:
    """Feeds capture files to a Recorder; spools media (or, for a classic pcap, notes where
    it lies in the mapped file); writes finished calls."""

    def __init__(self, cfg: Config, progress: Callable[[Importer], None] | None = None) -> None:
        self.cfg = cfg
        self.out = cfg.out
        os.makedirs(self.out, exist_ok=True)
        # A directory of its own, so two imports into one output directory cannot collide.
        self._spool_dir = tempfile.mkdtemp(prefix=".spool-", dir=self.out)
        # sealed with encryption on: no plain payload rests under the output directory
        self.spool = SpoolSet(self._spool_dir, sealed=bool(cfg.encrypt_to), fresh=True)
        policy = load_policy(cfg.policy) if cfg.policy else Policy()
        self._sink = SpoolSink(self.spool)
        self._columns: _Columns | None = None
        self.recorder = Recorder(settings_from(cfg), policy, self._sink)
        self._joiner: MediaJoiner | None = None
        if cfg.join_by_media and cfg.join_legs:
            from writer.mediajoin import MediaJoiner

            self._joiner = MediaJoiner()
        self.reload_requested = False
        """Set from a SIGHUP handler: the policy file is read again between packets."""
        keep_freed_blocks()
        self._pool = (ProcessPoolExecutor(max_workers=cfg.jobs, initializer=os.nice,
                                          initargs=(WRITER_NICE,))
                      if cfg.jobs > 1 else None)
        if self._pool is not None:
            # start the writer processes now, while this one is small: forked later they
            # would begin as copies of a process holding a capture's index
            for f in [self._pool.submit(os.getpid) for _ in range(cfg.jobs)]:
                f.result()
        self._pending: deque[tuple[Future[list[Written | WriteFailed]], list[Job]]] = deque()
        self._batch: list[Job] = []
        self._batch_packets = 0
        self._batch_since = 0.0
        self.drops: Counter[str] = Counter()
        """Packets not used, by reason (every stage's, once ``finish`` has run)."""
        self.warnings: list[str] = []
        self._catalog: SqliteCatalog | None = None
        # Opened beside the first packets' parsing (after the writers are forked): making a
        # new catalog's file and schema took 10-30 ms, all of it waiting on the disk.
        opener = ThreadPoolExecutor(1, thread_name_prefix="catalog")
        self._catalog_opening: Future[SqliteCatalog] | None = opener.submit(
            open_catalog, self.out, self.cfg.catalog_url)
        opener.shutdown(wait=False)
        self._catalog_batch: list[Prepared] = []
        self._catalog_at = time.monotonic()
        # one syncfs at the end instead of an fsync per file (finish)
        self.options = dataclasses.replace(options_from(cfg), durable=False)
        self.written: list[dict[str, Any]] = []
        """Index entries of the first MAX_TABLE_ROWS calls written (for the final table)."""
        self.calls_written = 0
        self.calls_with_audio = 0
        self.errors: list[str] = []
        """One line per call that could not be written (the first MAX_MESSAGES)."""
        self.error_count = 0
        self.bytes_done = 0
        self.current_file = ""
        self.current_bytes = 0
        self.current_size = 0
        self._progress = progress

    # what the Recorder counted, for the progress bar and the final line
    policy = property(lambda self: self.recorder.policy)
    packets = property(lambda self: self.recorder.packets)
    sip_packets = property(lambda self: self.recorder.sip_packets)
    media_packets = property(lambda self: self.recorder.media_packets)
    paused_packets = property(lambda self: self.recorder.paused_packets)
    reassembled = property(lambda self: self.recorder.reassembled)
    calls_found = property(lambda self: self.recorder.calls_found)
    calls_skipped = property(lambda self: self.recorder.calls_skipped)

    def import_file(self, path: str) -> None:
        """Import one file; raises CaptureError (one line, naming the file) if unreadable."""
        if _mappable(path):
            self._import_indexed(path)
            return
        reader = open_capture(path)
        self._leave_mapping()
        self.current_file = path
        self.recorder.source = os.path.basename(path)
        try:
            self.current_size = os.path.getsize(path)
        except OSError:
            self.current_size = 0
        try:
            self._run(reader)
        except OSError as exc:
            raise CaptureError(f"{path}: read failed: {exc.strerror or exc}") from None
        except CaptureError as exc:
            # Corruption mid-file: keep what was read, report the rest.
            self.warnings.append(f"{exc}; packets before it were imported")
        finally:
            self.bytes_done += reader.bytes_read
            skipped = getattr(reader, "skipped_blocks", 0)
            if skipped:  # pcapng blocks of kinds that carry no packets calltap reads
                self.drops["pcapng_block_skipped"] += skipped
            close_capture(reader)
            self._events()
        if reader.truncated:
            self.warnings.append(
                f"{path}: capture ends mid-packet at byte {reader.bytes_read}; "
                "packets before the cut were imported"
            )

    def _import_indexed(self, path: str) -> None:
        """A classic pcap, memory-mapped and indexed a window at a time: its RTP bulk routed
        on columns, each call's media read straight from the file when it is written."""
        self.current_file = path
        self.recorder.source = os.path.basename(path)
        self.current_size = os.path.getsize(path)
        if self.reload_requested:
            self.reload_policy()
        self._leave_mapping()
        sink = _Columns(path)
        self.recorder.sink = sink
        self._columns = sink
        last: PacketIndex | None = None
        try:
            windows = index_windows(path, INDEX_WINDOW, FIRST_INDEX_WINDOW)
            for index, udp in _decoded_ahead(windows):
                last = index

                def between(done: int, index: PacketIndex = index) -> None:
                    self._events()
                    if self.reload_requested:
                        self.reload_policy()
                    self.current_bytes = int(index.offset[done - 1]) if done else 0
                    if self._progress is not None:
                        self._progress(self)

                self.recorder.feed_indexed(index, sink, between, udp)
                self._events()
            self.recorder.end_indexed()
            if last is not None and last.first + len(last):
                self.recorder.check_calls(self.recorder.clock)
            self._events()
        finally:
            self.bytes_done += self.current_size
            self.current_bytes = self.current_size
            # calls still open keep their media in this file until they end (finish) or
            # another file comes (_leave_mapping)
            self.recorder.sink = self._sink
        if last is not None and last.error:
            self.warnings.append(f"{last.error}; packets before it were imported")
        elif last is not None and last.truncated:
            self.warnings.append(f"{path}: capture ends mid-packet; packets before the cut "
                                 "were imported")

    def _leave_mapping(self) -> None:
        """Before another file: calls still open move their media so far from the last
        mapped capture to the spool (they go on in the next file); the mapping closes."""
        sink = self._columns
        if sink is None:
            return
        for serial in sink.open_calls():
            got = sink.take(serial)
            if got is not None:
                cols = got.columns()
                for i, (t, f) in enumerate(zip(cols.ts.tolist(), cols.flow.tolist(),
                                               strict=True)):
                    self.spool.add(serial, t, f, cols.payload(i))
        self._columns = None

    def _run(self, reader: Any) -> None:
        rec = self.recorder
        packets = iter(reader)
        before = rec.packets
        size = FIRST_FEED
        while True:
            batch = list(islice(packets, size))
            size = min(size * 2, PROGRESS_EVERY)
            if not batch:
                break
            rec.feed(batch)
            self._events()
            if self.reload_requested:
                self.reload_policy()
            self.current_bytes = reader.bytes_read
            if self._progress is not None:
                self._progress(self)
        if rec.packets > before:  # the last packet's time counts too
            rec.check_calls(rec.clock)
            self._events()

    def _media(self, serial: int) -> tuple[str | None, Media]:
        """A call's spool file and its media (the spool, or places in the mapped file)."""
        spool = self.spool.close_call(serial)
        key = self.spool.release(serial)
        media: Media = SealedSpool(spool, key) if spool and key else spool
        if self._columns is not None:
            # a call may have begun in an earlier file (its spool) and gone on here
            got = self._columns.take(serial)
            if got is not None:
                media = _joined(spool, key, got)
        return spool, media

    def _events(self) -> None:
        for ev in self.recorder.events():
            if isinstance(ev, CallEnded):
                spool, media = self._media(ev.call.serial)
                if ev.record is None:
                    if spool is not None:
                        os.unlink(spool)
                elif ev.record.legs:  # one recording of a B2BUA's legs: all their media
                    self._write(ev.record, [media, *(self._media(leg.serial)[1]
                                                     for leg in ev.record.legs)])
                elif self._joiner is not None and not ev.record.related:
                    # legs linked by nothing but their audio (join_by_media)
                    self._write_all(self._joiner.ended(ev.record, media, media_columns(media),
                                                       self.recorder.clock))
                else:
                    self._write(ev.record, media)
        if self._joiner is not None and self._joiner.held:
            self._write_all(self._joiner.expire(self.recorder.clock))
        self._submit_waiting()

    def _write_all(self, ready: list[tuple[CallRecord, list[Media]]]) -> None:
        for record, media in ready:
            self._write(record, media if record.legs else media[0])

    def reload_policy(self) -> None:
        """Read the policy file again (SIGHUP): calls in progress keep their decision, new
        calls get the new policy; a file that does not load leaves the old one in force."""
        self.reload_requested = False
        if not self.cfg.policy:
            return
        try:
            policy = load_policy(self.cfg.policy)
        except PolicyError as exc:
            self.warnings.append(f"policy not reloaded, the previous one stays: {exc}")
            return
        self.recorder.set_policy(policy)
        self.warnings.append(f"policy reloaded from {self.cfg.policy}")

    def _write(self, record: CallRecord, spool: Media | list[Media]) -> None:
        call = record.call
        if self._pool is None:
            try:
                self._done(call, spool, _write(record, spool, self.out, self.options), None)
            except Exception as exc:  # noqa: BLE001 - one bad call must not end the import
                self._done(call, spool, None, exc)
            return
        if not self._batch:
            self._batch_since = time.monotonic()
        self._batch.append((record, spool))
        self._batch_packets += _packets(spool)
        if len(self._batch) >= WRITE_BATCH_CALLS or self._batch_packets >= WRITE_BATCH_PACKETS:
            self._submit()
        while self._pending and self._pending[0][0].done():
            self._collect()

    def _submit_waiting(self) -> None:
        """Hand over a batch that has waited WRITE_BATCH_WAIT_S for more calls."""
        if self._batch and time.monotonic() - self._batch_since >= WRITE_BATCH_WAIT_S:
            self._submit()

    def _submit(self) -> None:
        """Hand the calls batched so far to a writer process."""
        if not self._batch or self._pool is None:
            return
        while len(self._pending) >= MAX_PENDING_WRITES * (self.cfg.jobs or 1):
            self._collect()
        fut = self._pool.submit(_write_batch, self._batch, self.out, self.options)
        self._pending.append((fut, self._batch))
        self._batch, self._batch_packets = [], 0

    def _collect(self) -> None:
        fut, jobs = self._pending.popleft()
        try:
            results: list[Written | WriteFailed] = fut.result()
        except Exception as exc:  # noqa: BLE001 - a writer process died: its calls are lost
            results = [WriteFailed(str(exc) or type(exc).__name__)] * len(jobs)
        for (record, spool), result in zip(jobs, results, strict=True):
            if isinstance(result, WriteFailed):
                self._done(record.call, spool, None, result)
            else:
                self._done(record.call, spool, result, None)

    def _done(self, call: Call, spool: Any,
              result: Written | None,
              exc: BaseException | None) -> None:
        if result is not None:
            row, drops, audio = result
            self._catalog_add(row)
            self.drops.update(drops)
            self.calls_written += 1
            self.calls_with_audio += 1 if audio else 0
            if len(self.written) < MAX_TABLE_ROWS:
                self.written.append(entry_of(row))
        else:
            self.error_count += 1
            if len(self.errors) < MAX_MESSAGES:
                self.errors.append(f"call {call.call_id[:60]!r}: not written: {exc}")
        for part in spool if isinstance(spool, list) else [spool]:
            if isinstance(part, str | SealedSpool):
                os.unlink(part if isinstance(part, str) else part.path)
        if self._progress is not None:
            self._progress(self)

    def _catalog_ready(self) -> SqliteCatalog | None:
        """The catalog once open; None (and a warning) where it could not be."""
        if self._catalog_opening is not None:
            opening, self._catalog_opening = self._catalog_opening, None
            try:
                self._catalog = opening.result()
            except Exception as exc:  # noqa: BLE001 - the catalog is an index: no call waits on it
                self.warnings.append(f"catalog: {exc}; calls are written but not indexed for "
                                     "search (`calltap catalog rebuild` later)")
        return self._catalog

    def _catalog_add(self, row: Prepared | None, force: bool = False) -> None:
        """Index written calls in the catalog, in batches: at most CATALOG_BATCH calls or
        CATALOG_DELAY_S behind the writers (so a call is searchable within a second)."""
        if row is not None:
            self._catalog_batch.append(row)
        now = time.monotonic()
        catalog = self._catalog_ready()
        if catalog is None or not self._catalog_batch or not (
                force or len(self._catalog_batch) >= CATALOG_BATCH
                or now - self._catalog_at >= CATALOG_DELAY_S):
            return
        try:
            catalog.add_prepared(self._catalog_batch)
        except (sqlite3.Error, CatalogError) as exc:
            self.warnings.append(f"catalog: {exc}; rebuild it with `calltap catalog rebuild`")
            self._catalog = None
        self._catalog_batch = []
        self._catalog_at = now

    def finish(self) -> None:
        """End of all input: write every call still open and wait for the writers."""
        syncer = None
        try:
            self.recorder.finish()
            self._events()
            if self._joiner is not None:
                self._write_all(self._joiner.flush())
            self._submit()
            while self._pending:
                self._collect()
            self._leave_mapping()
            if self.options.signing_key:  # the log's newest entries under a signed root
                now = time.time()
                translog.checkpoint(self.out, self.options.signing_key,
                                    rfc3339(int(now * NS)), now, durable=False)
                if self.options.tsa_url:  # the checkpoints stamped by an outside authority
                    try:
                        stamp_new(self.out, self.options.tsa_url)
                    except TimestampError as exc:
                        self.warnings.append(f"checkpoint not timestamped yet: {exc}")
            # Every call's files are complete: they go to the disk while the catalog takes
            # its last rows and closes (SQLite syncs the catalog itself as it closes).
            syncer = ThreadPoolExecutor(1, thread_name_prefix="sync")
            synced = syncer.submit(sync_filesystem, self.out)
            self._catalog_add(None, force=True)
        finally:
            catalog = self._catalog_ready()
            if catalog is not None:
                catalog.close()
            if self._pool is not None:
                self._pool.shutdown()
            self.drops.update(self.recorder.all_drops())
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            if syncer is None:
                sync_filesystem(self.out)
            else:
                syncer.shutdown()
                synced.result()


class ProgressBar:
    """A one-line progress display on a terminal: bytes read, calls found, calls written."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self.stream = stream
        self._last = 0.0
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, imp: Importer) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        size = imp.current_size or 1
        frac = min(1.0, imp.current_bytes / size)
        bar = "#" * int(frac * 24)
        name = os.path.basename(imp.current_file)[-28:]
        self.stream.write(
            f"\r{name:28} [{bar:24}] {imp.current_bytes / 1e6:7.1f}/{size / 1e6:.1f} MB "
            f"calls found {imp.calls_found} written {imp.calls_written} "
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()
