"""Offline import: the capture, correlate and writer stages in one process."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from calltap.config import Config
from calltap.policyfile import PolicyError, load_policy
from capture.decode import (
    DROP_REASONS,
    IP_FRAGMENT,
    TCP_PROTO,
    Decoded,
    decode,
    decode_fragment,
    decode_transport,
    outer_vlan,
)
from capture.dedup import Deduplicator
from capture.errors import CaptureError
from capture.fragments import Reassembler
from capture.hep import HEP_PORT, HepError, is_hep, parse_hep
from capture.pcapfile import close_capture, open_capture
from capture.spool import SpoolSet
from capture.tcp import TcpSip
from correlate.call import MAX_FLOWS, Call
from correlate.dialog import DialogTracker
from correlate.errors import SipError
from correlate.events import CallFinished, CallStarted, Event, MediaChanged
from correlate.media import OTHER, RTCP, MediaTable
from correlate.policy import RFC4733_DIGITS, Policy, feed_digit
from correlate.record import finished
from correlate.sip import looks_like_sip, parse_sip
from writer.job import WriteResult, write_call
from writer.options import WriteOptions
from writer.output import sync_filesystem
from writer.rtp import header_only
from writer.srtp import parse_key_spec

NS = 1_000_000_000
# Capture-time interval between timer runs (inactivity and linger checks).
TIMER_NS = NS
# Calls listed in the end-of-import table; the index holds them all, the table is a glance.
MAX_TABLE_ROWS = 1000
# Error lines kept for the end of an import; the rest are counted.
MAX_MESSAGES = 100
# RTP-looking flows without signalling under watch; each holds up to PROMOTE_AFTER packets.
MAX_RTP_CANDIDATES = 4096
# Packets of one SSRC with advancing sequence numbers before a flow is taken for RTP.
PROMOTE_AFTER = 5
# Largest RTP packet of a dynamic payload type still taken for audio (Opus tops out near
# 1275 bytes at 510 kbit/s, but voice calls stay far below; video fills the MTU).
MAX_AUDIO_PAYLOAD = 600
NON_AUDIO = -2
TOO_MANY = -1
# Finished calls queued per writer process; each holds a call record, its media is on disk.
MAX_PENDING_WRITES = 4
# Packets between progress checks; a wall-clock read per packet would cost more than it shows.
PROGRESS_EVERY = 8192


def options_from(cfg: Config) -> WriteOptions:
    """The writer's options from the configuration (the policy's choices for a call travel
    in its CallRecord)."""
    return WriteOptions(
        audio_format=cfg.audio_format, layout=cfg.layout, comfort_noise=cfg.comfort_noise,
        srtp_keys=tuple(parse_key_spec(spec) for spec in cfg.srtp_keys),
        jitter_buffer_mode=cfg.jitter_buffer, jitter_buffer_ms=cfg.jitter_buffer_ms,
        jitter_buffer_max_ms=cfg.jitter_buffer_max_ms)


class Importer:
    """Feeds capture files through decoding, the dialog tracker, the spool and the writer."""

    def __init__(self, cfg: Config, progress: Callable[[Importer], None] | None = None) -> None:
        self.cfg = cfg
        self.out = cfg.out
        os.makedirs(self.out, exist_ok=True)
        self.policy = load_policy(cfg.policy) if cfg.policy else Policy()
        self.media = MediaTable()
        self.tracker = DialogTracker(
            self.media,
            inactivity_ns=int(cfg.inactivity_timeout * NS),
            linger_ns=int(cfg.linger * NS),
            unsignalled_ns=int(cfg.unsignalled_timeout * NS),
            keep_headers=self.policy.headers_needed(),
            pause=self.policy.pause,
        )
        self.reload_requested = False
        """Set from a SIGHUP handler: the policy file is read again between packets."""
        self.calls_skipped = 0
        """Calls the policy said not to record."""
        self._source = ""
        self._vlan = -1
        self._event_pts: dict[int, frozenset[int]] = {}
        # A directory of its own, so two imports into one output directory cannot collide.
        self._spool_dir = tempfile.mkdtemp(prefix=".spool-", dir=self.out)
        self.spool = SpoolSet(self._spool_dir)
        self._pool = ProcessPoolExecutor(max_workers=cfg.jobs) if cfg.jobs > 1 else None
        self._pending: deque[tuple[Future[WriteResult], Call, str | None]] = deque()
        self.drops: Counter[str] = Counter()
        """Packets not used, by reason."""
        self.fragments = Reassembler()
        self.dedup = Deduplicator(int(cfg.dedup_window * NS)) if cfg.dedup_window > 0 else None
        self.hep_packets = 0
        self.tcp = TcpSip()
        self._candidates: dict[tuple[bytes, int, bytes, int], list[Any]] = {}
        self.reassembled = 0
        """IP datagrams rebuilt from fragments."""
        self.packets = 0
        self.paused_packets = 0
        """Media packets spooled without their payload while their call was paused."""
        self.media_packets = 0
        self.sip_packets = 0
        self.calls_found = 0
        # one syncfs at the end instead of an fsync per file (finish)
        self.options = dataclasses.replace(options_from(cfg), durable=False)
        self.written: list[dict[str, Any]] = []
        """Index entries of the first MAX_TABLE_ROWS calls written (for the final table)."""
        self.calls_written = 0
        self.calls_with_audio = 0
        self.errors: list[str] = []
        """One line per call that could not be written (the first MAX_MESSAGES)."""
        self.error_count = 0
        self.warnings: list[str] = []
        self.bytes_done = 0
        self.current_file = ""
        self.current_bytes = 0
        self.current_size = 0
        self._progress = progress
        self._next_timer = -1
        self._clock = 0

    def import_file(self, path: str) -> None:
        """Import one file; raises CaptureError (one line, naming the file) if unreadable."""
        reader = open_capture(path)
        self.current_file = path
        self._source = os.path.basename(path)
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
            close_capture(reader)
        if reader.truncated:
            self.warnings.append(
                f"{path}: capture ends mid-packet at byte {reader.bytes_read}; "
                "packets before the cut were imported"
            )

    def _run(self, reader: Any) -> None:
        media_get = self.media.get
        spool_add = self.spool.add
        calls = self.tracker.calls
        drops = self.drops
        dedup = self.dedup.seen if self.dedup is not None else None
        shared = self.media.shared
        watch_dtmf = bool(self.policy.pause.dtmf_pause or self.policy.pause.dtmf_resume)
        n = 0
        for ts, link, frame in reader:
            n += 1
            if ts >= self._next_timer:
                if self._next_timer >= 0:
                    # Timers run on the clock as it stood before this packet: a capture whose
                    # clock leaps (broken timestamps) cannot time a call out under the very
                    # packet that continues it.
                    now = self._clock
                    self._events(self.tracker.handle_timer(now))
                    self.fragments.expire(now)
                    self.tcp.expire(now)
                self._next_timer = ts + TIMER_NS
            self._clock = ts
            if n % PROGRESS_EVERY == 0:
                if self.reload_requested:
                    self.reload_policy()
                self.packets += PROGRESS_EVERY
                self.current_bytes = reader.bytes_read
                if self._progress is not None:
                    self._progress(self)
            r: Decoded | int | None = decode(link, frame)
            if type(r) is int:
                if r == IP_FRAGMENT:
                    r = self._fragment(ts, link, frame)
                if isinstance(r, int):
                    drops[DROP_REASONS[r]] += 1
                    continue
                if r is None:
                    continue
            assert r is not None and not isinstance(r, int)
            proto, src, dst, sport, dport, payload = r
            if proto == TCP_PROTO:
                for message in self.tcp.feed(ts, src, sport, dst, dport, payload):
                    self._vlan = outer_vlan(link, frame)
                    self._sip(message, ts, src, sport, dst, dport)
                continue
            if dedup is not None and dedup(ts, hash(r)):
                drops["duplicate_packet"] += 1
                continue
            if (dport == HEP_PORT or payload.startswith(b"HEP3")) and is_hep(payload, dport):
                try:
                    hts, _proto, src, dst, sport, dport, payload, _kind = parse_hep(payload)
                except HepError:
                    drops["malformed_hep"] += 1
                    continue
                self.hep_packets += 1
                if hts is not None:
                    ts = hts  # the agent's capture time
            dkey = (dst, dport)
            d_owner = media_get(dkey)
            s_owner = None if d_owner is not None else media_get((src, sport))
            if d_owner is not None and shared and dkey in shared:
                # several live calls announced this address: the sender's says which
                s_owner = media_get((src, sport))
                if s_owner is not None and s_owner[0] != d_owner[0]:
                    d_owner = self.media.owner_for(dkey, s_owner[0]) or d_owner
            owner = d_owner or s_owner
            if owner is not None:
                call = calls.get(owner[0])
                if call is not None:
                    decision = call.decision
                    if decision is not None and not decision.record:
                        drops["media_of_call_not_recorded"] += 1
                        continue
                    pair = ((src, sport), dkey)
                    flow = call.flow_ids.get(pair)
                    if flow is None:
                        flow = self._new_flow(call, pair)
                    if flow >= 0:
                        if watch_dtmf:
                            self._dtmf(call, ts, payload)
                        if call.pauses and call.pauses[-1][1] == 0:
                            # paused: the audio never reaches the disk, only the RTP header
                            payload = header_only(payload)
                            self.paused_packets += 1
                        spool_add(call.serial, ts, flow, payload)
                        if ts > call.last_ns:
                            call.last_ns = ts
                        self.media_packets += 1
                        continue
                    if flow == NON_AUDIO:
                        drops["non_audio_media"] += 1
                        first = call.video_span[0] or ts
                        call.video_span = (first, max(ts, call.video_span[1]))
                    continue
            if not looks_like_sip(payload):
                if not self._rtp_candidate(ts, src, sport, dst, dport, payload):
                    drops["udp_not_sip_or_known_media"] += 1
                continue
            self._vlan = outer_vlan(link, frame)
            self._sip(payload, ts, src, sport, dst, dport)
        self.packets += n % PROGRESS_EVERY
        self.current_bytes = reader.bytes_read
        if n:  # the last packet's time counts too
            self._events(self.tracker.handle_timer(self._clock))

    def _sip(self, data: bytes, ts: int, src: bytes, sport: int, dst: bytes, dport: int) -> None:
        try:
            msg = parse_sip(data)
        except SipError:
            self.drops["malformed_sip"] += 1
            return
        self.sip_packets += 1
        self._events(self.tracker.handle_sip(msg, ts, (src, sport), (dst, dport)))

    def _fragment(self, ts: int, link: int, frame: bytes) -> Decoded | int | None:
        """Feed a fragment to reassembly: the decoded datagram once whole, else None."""
        f = decode_fragment(link, frame)
        if type(f) is int:
            return f
        key, offset, more, proto, src, dst, data = f  # type: ignore[misc]
        whole = self.fragments.feed(ts, key, offset, more, data)
        if whole is None:
            return None
        self.reassembled += 1
        return decode_transport(proto, src, dst, whole)

    def _rtp_candidate(self, ts: int, src: bytes, sport: int, dst: bytes, dport: int,
                       payload: bytes) -> bool:
        """Track UDP that looks like RTP but belongs to no signalled call; after a few
        packets of one SSRC with advancing sequence numbers it becomes an unsignalled call."""
        if (len(payload) < 13 or payload[0] >> 6 != 2 or 72 <= payload[1] & 0x7F <= 76
                or min(sport, dport) < 1024):
            return False
        key = (src, sport, dst, dport)
        ssrc = payload[8:12]
        seq = (payload[2] << 8) | payload[3]
        cand = self._candidates.get(key)
        if cand is None or cand[0] != ssrc or not 0 < ((seq - cand[1]) & 0xFFFF) <= 20:
            if cand is None and len(self._candidates) >= MAX_RTP_CANDIDATES:
                del self._candidates[next(iter(self._candidates))]  # the oldest goes
            cand = self._candidates[key] = [ssrc, seq, []]
        cand[1] = seq
        cand[2].append((ts, payload))
        if len(cand[2]) < PROMOTE_AFTER:
            return True
        del self._candidates[key]
        pt = payload[1] & 0x7F
        # Audio only: static video types (RFC 3551: 25-34) and big dynamic payloads (video)
        # are left alone.
        if 24 < pt < 96 or (pt >= 96 and max(len(p) for _t, p in cand[2]) > MAX_AUDIO_PAYLOAD):
            return False
        call = self.tracker.add_unsignalled(ts, (src, sport), (dst, dport))
        if call is None:
            return False
        self.calls_found += 1
        pair = ((src, sport), (dst, dport))
        flow = self._new_flow(call, pair)
        for t, p in cand[2]:
            self.spool.add(call.serial, t, flow, p)
            self.media_packets += 1
        call.last_ns = ts
        return True

    def _new_flow(self, call: Call, pair: Any) -> int:
        """Index of a new media flow of ``call``; NON_AUDIO for a flow from or to a
        non-audio endpoint (video, T.38), TOO_MANY when the call has too many flows. What
        each end is comes from the call's own announcements, shared addresses included."""
        key = call.key
        d_owner = self.media.owner_for(pair[1], key)
        s_owner = self.media.owner_for(pair[0], key)
        if (d_owner is not None and d_owner[2] == OTHER) or (
            s_owner is not None and s_owner[2] == OTHER
        ):
            if len(call.flow_ids) < 4 * MAX_FLOWS:  # remembered, within a bound
                call.flow_ids[pair] = NON_AUDIO
            return NON_AUDIO
        if len(call.flows) >= MAX_FLOWS:
            self.drops["media_flow_limit"] += 1
            return TOO_MANY
        d_side = d_owner[1] if d_owner is not None else -1
        s_side = s_owner[1] if s_owner is not None else -1
        ref = d_owner if d_side >= 0 else s_owner
        rtcp = 1 if ref is not None and ref[2] == RTCP else 0
        call.flows.append((pair[0], pair[1], d_side, s_side, rtcp))
        call.flow_ids[pair] = len(call.flows) - 1
        return len(call.flows) - 1

    def _events(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, CallFinished):
                self._event_pts.pop(ev.call.serial, None)
                if ev.call.decision is not None and not ev.call.decision.record:
                    self._skip(ev)
                    continue
                self._write(ev)
            elif isinstance(ev, CallStarted):
                self.calls_found += 1
                call = ev.call
                call.source, call.vlan = self._source, self._vlan
                if call.decision is None:
                    call.decision = self.policy.decide(self.policy.facts(call, call.source,
                                                                         call.vlan))
            elif isinstance(ev, MediaChanged):
                self._event_pts.pop(ev.call.serial, None)

    def _skip(self, ev: CallFinished) -> None:
        """A finished call the policy said not to record: counted, nothing written."""
        self.calls_skipped += 1
        self.spool.close_call(ev.call.serial)

    def _dtmf(self, call: Call, ts: int, payload: bytes) -> None:
        """RFC 4733 events of a call, for the policy's pause and resume sequences: each
        event counts once, however many packets repeat it (section 2.5.1.4)."""
        pts = self._event_pts.get(call.serial)
        if pts is None:
            pts = self._event_pts[call.serial] = frozenset(
                pt for side in call.offers for o in side for pt, m in o.rtpmap.items()
                if m[0].lower() == "telephone-event")
        if len(payload) < 16 or payload[1] & 0x7F not in pts:
            return
        start = len(header_only(payload))
        if start + 4 > len(payload) or payload[start] >= len(RFC4733_DIGITS):
            return
        rtp_ts = int.from_bytes(payload[4:8], "big")
        if rtp_ts == call.event_ts:
            return
        call.event_ts = rtp_ts
        feed_digit(call, self.policy.pause, ts, RFC4733_DIGITS[payload[start]])

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
        self.policy = policy
        self.tracker.keep_headers = policy.headers_needed()
        self.tracker.pause = policy.pause
        self.warnings.append(f"policy reloaded from {self.cfg.policy}")

    def _write(self, ev: CallFinished) -> None:
        call = ev.call
        spool = self.spool.close_call(call.serial)
        if not call.responded and spool is None and not call.flows:
            # An INVITE nobody answered and no media: nothing to record (INVITE floods,
            # scanners). Counted, not written.
            self.drops["unanswered_invite_not_recorded"] += 1
            return
        record = finished(call, self.policy.identity)
        if self._pool is None:
            try:
                self._done(call, spool, write_call(record, spool, self.out, self.options), None)
            except Exception as exc:  # noqa: BLE001 - one bad call must not end the import
                self._done(call, spool, None, exc)
            return
        while len(self._pending) >= MAX_PENDING_WRITES * (self.cfg.jobs or 1):
            self._collect()
        fut = self._pool.submit(write_call, record, spool, self.out, self.options)
        self._pending.append((fut, call, spool))
        while self._pending and self._pending[0][0].done():
            self._collect()

    def _collect(self) -> None:
        fut, call, spool = self._pending.popleft()
        try:
            self._done(call, spool, fut.result(), None)
        except Exception as exc:  # noqa: BLE001 - one bad call must not end the import
            self._done(call, spool, None, exc)

    def _done(self, call: Call, spool: str | None,
              result: WriteResult | None,
              exc: BaseException | None) -> None:
        if result is not None:
            entry, drops = result
            self.drops.update(drops)
            self.calls_written += 1
            self.calls_with_audio += 1 if entry["audio"] else 0
            if len(self.written) < MAX_TABLE_ROWS:
                self.written.append(entry)
        else:
            self.error_count += 1
            if len(self.errors) < MAX_MESSAGES:
                self.errors.append(f"call {call.call_id[:60]!r}: not written: {exc}")
        if spool is not None:
            os.unlink(spool)
        if self._progress is not None:
            self._progress(self)

    def finish(self) -> None:
        """End of all input: write every call still open and wait for the writers."""
        for reason, count in self.tracker.drops.items():
            self.drops[reason] += count
        self.tracker.drops.clear()
        self.fragments.expire(1 << 62)  # end of input: nothing more will arrive
        self.drops.update(self.fragments.drops)
        self.drops.update(self.tcp.drops)
        if self.media.refused:
            self.drops["media_table_full"] += self.media.refused
        try:
            self._events(self.tracker.finish())
            while self._pending:
                self._collect()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            for reason, count in self.tracker.drops.items():
                self.drops[reason] += count
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            sync_filesystem(self.out)


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
