"""The recorder core, sans-IO: packets and capture times in, calls and their media out.

Everything that decides lives here: decoding, IP reassembly, SIP over TCP, duplicate
suppression, HEP, the dialog tracker, media routing, unsignalled RTP promotion, the policy
decision, pause triggers and the disk-full refusal. It reads no clock, file, socket or
Redis: a shell (``calltap import``, the live capture process, ``calltap stats``) feeds it
packets, gives it a MediaSink for each routed media packet, runs its timers and acts on the
events it queues. Shells compose a Recorder; they never subclass it (the h11/aioquic style:
``feed``, ``next_deadline``, ``handle_timer``, ``events``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

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
from capture.dedup import Deduplicator, duplicates
from capture.fragments import Reassembler
from capture.hep import HEP_PORT, HepError, is_hep, parse_hep
from capture.index import PacketIndex
from capture.rtphead import header_only
from capture.tcp import TcpSip
from capture.vector import UdpBatch, decode_udp, rtp_like
from correlate.call import MAX_FLOWS, Call, MediaOffer
from correlate.dialog import DialogTracker
from correlate.errors import SipError
from correlate.events import (
    CallEnded,
    CallFinished,
    CallMoved,
    CallStarted,
    Event,
    FlowAdded,
    MediaActive,
    MediaChanged,
)
from correlate.legs import Legs
from correlate.media import OTHER, RTCP, RTP, MediaTable
from correlate.policy import RFC4733_DIGITS, Decision, Policy, feed_digit
from correlate.record import finished
from correlate.router import ColumnSink, MediaSink, Router
from correlate.sip import is_registration, looks_like_sip, parse_sip

if TYPE_CHECKING:  # another process's word, which only live capture passes on
    from correlate.shared import Announcement

NS = 1_000_000_000
# Capture-time interval between timer runs (inactivity and linger checks).
TIMER_NS = NS
# RTP-looking flows without signalling under watch; each holds up to PROMOTE_AFTER packets
# of at most MAX_CANDIDATE_BYTES (a flood of big UDP cannot hold more than 4096 * 5 * 1.5 KB).
MAX_RTP_CANDIDATES = 4096
MAX_CANDIDATE_BYTES = 1500
# Packets of one SSRC with advancing sequence numbers before a flow is taken for RTP.
PROMOTE_AFTER = 5
# Largest RTP packet of a dynamic payload type still taken for audio (Opus tops out near
# 1275 bytes at 510 kbit/s, but voice calls stay far below; video fills the MTU).
MAX_AUDIO_PAYLOAD = 600
NON_AUDIO = -2
TOO_MANY = -1

# With a shared media map (several capture processes or probes), UDP that looks like RTP
# or RTCP but has no owner waits this long (capture time) for the process that sees its
# call's SIP to announce the call here, then goes the unsignalled way.
HOLD_NS = NS
# Bytes of frames held so at once: a second of the first media of a few hundred new calls
# (about 200 bytes a packet, 50 packets a second each way); past it, media goes unheld.
MAX_HELD_BYTES = 16 << 20
# A process recording media of a call signalled elsewhere tells the owner it flows every
# quarter of the inactivity timeout, at most this far apart.
MAX_ACTIVITY_NS = 30 * NS

# Packets between two looks by the shell while a whole capture is fed (finished calls go
# to the writers meanwhile, so reading and writing overlap).
BETWEEN_PACKETS = 65536

Packet = tuple[int, int, bytes]
"""(capture time ns, link type, frame)."""


@dataclass(frozen=True)
class Settings:
    """The Recorder's timeouts (capture time)."""

    inactivity_ns: int = 300 * NS
    linger_ns: int = 2 * NS
    unsignalled_ns: int = 30 * NS
    dedup_window_ns: int = 100_000_000
    join_legs: bool = True
    """B2BUA legs (Session-ID, ``join_header``) are written as one recording."""
    join_header: str = ""
    """A header carrying the other leg's Call-ID (X-CID style); '' for none."""
    shared: bool = False
    """Other processes share this one's media map (``announce``): media nobody here
    announced waits HOLD_NS for theirs."""


class Recorder:
    """Calls from packets; see the module docstring."""

    def __init__(self, settings: Settings, policy: Policy, sink: MediaSink,
                 source: str = "") -> None:
        self.settings = settings
        self.policy = policy
        self.sink = sink
        self.source = source
        """Where packets come from (a file name, an interface): a policy fact."""
        self.media = MediaTable()
        self.legs = Legs(settings.join_header)
        """Which calls are a B2BUA's legs of one conversation (joined, or related only)."""
        self.tracker = DialogTracker(
            self.media, inactivity_ns=settings.inactivity_ns, linger_ns=settings.linger_ns,
            unsignalled_ns=settings.unsignalled_ns, keep_headers=self._kept(policy),
            pause=policy.pause)
        self.fragments = Reassembler()
        self.dedup = (Deduplicator(settings.dedup_window_ns)
                      if settings.dedup_window_ns > 0 else None)
        self.tcp = TcpSip()
        self.refusing = False
        """New calls are not recorded (the shell's disk is nearly full)."""
        self.stopping = False
        """Calls still open at the end are interrupted, not ended by the input's end."""
        self.drops: Counter[str] = Counter()
        """Packets (and calls) not used, by reason; the stages' own counts: ``all_drops``."""
        self.packets = 0
        self.sip_packets = 0
        self.media_packets = 0
        self.paused_packets = 0
        """Media packets kept without their payload while their call was paused."""
        self.reassembled = 0
        """IP datagrams rebuilt from fragments."""
        self.hep_packets = 0
        self.calls_found = 0
        self.calls_skipped = 0
        """Calls the policy said not to record."""
        self.calls_refused = 0
        """Calls not recorded because the shell refused new calls."""
        self.clock = 0
        """Capture time of the latest packet."""
        self._events: list[Event] = []
        self._router: Router | None = None
        self._dedup_tail: dict[tuple[int, ...], int] = {}
        self._next_timer = -1
        self._vlan = -1
        self._event_pts: dict[int, frozenset[int]] = {}
        self._candidates: dict[tuple[bytes, int, bytes, int], list[Any]] = {}
        self._held: dict[tuple[bytes, int, bytes, int], list[Packet]] | None = (
            {} if settings.shared else None)
        """Per flow, media waiting for another process's announcement (shared mode)."""
        self._held_bytes = 0
        self._told: dict[int, int] = {}
        """Per remote call (serial), its latest media time its owner was told of."""

    # -- the shell's side -------------------------------------------------------------

    def events(self) -> list[Event]:
        """The events queued since the last call, oldest first."""
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> int:
        """Capture time at which ``handle_timer`` has work, -1 before the first packet."""
        return self._next_timer

    def handle_timer(self, now: int) -> None:
        """Time has reached ``now`` (capture time, or the wall clock when live and idle):
        calls that timed out or lingered long enough end; stale fragments and TCP streams
        go."""
        self._timers(now)
        self._next_timer = max(self._next_timer, now + TIMER_NS)

    def check_calls(self, now: int) -> None:
        """Run only the calls' timers at ``now`` (the end of one capture file: its last
        packet's time counts too)."""
        self._finished(self.tracker.handle_timer(now))

    def finish(self) -> None:
        """End of all input: every open call ends."""
        self.fragments.expire(1 << 62)  # nothing more will arrive
        self._release(1 << 62)  # held media: its call, else the unsignalled way
        self._finished(self.tracker.finish())
        if self.legs.waiting:  # partners that never ended: each leg on its own
            for call in self.legs.all_waiting():
                self._events.append(CallEnded(call, finished(call, self.policy.identity), ""))

    def set_policy(self, policy: Policy) -> None:
        """A new policy for calls that start from now on (calls in progress keep their
        decision)."""
        self.policy = policy
        self.tracker.keep_headers = self._kept(policy)
        self.tracker.pause = policy.pause

    def _kept(self, policy: Policy) -> frozenset[str]:
        """INVITE headers the tracker keeps: the policy's, and those that link legs."""
        return policy.headers_needed() | self.legs.headers()

    def restore(self, call: Call) -> None:
        """Take up a call a previous process had in progress."""
        self.tracker.restore(call)
        self.calls_found += 1

    def all_drops(self) -> Counter[str]:
        """Every stage's drop counts, summed by reason."""
        out = Counter(self.drops)
        for more in (self.tracker.drops, self.tcp.drops, self.fragments.drops):
            out.update(more)
        if self.media.refused:
            out["media_table_full"] += self.media.refused
        return out

    # -- packets --------------------------------------------------------------------------

    def feed(self, packets: Iterable[Packet], dedup_here: bool = True) -> None:
        """Take packets in capture order. Timers run between them whenever capture time
        passes a tick, on the clock as it stood before the packet: a capture whose clock
        leaps (broken timestamps) cannot time a call out under the very packet that
        continues it. Without ``dedup_here`` the caller has removed duplicates."""
        media_get = self.media.lookup
        sink_add = self.sink.add
        # a spool's own add by serial, when the sink is one: a call less per media packet
        by_serial = getattr(self.sink, "by_serial", None)
        calls = self.tracker.calls
        drops = self.drops
        dedup = self.dedup.seen if self.dedup is not None and dedup_here else None
        shared = self.media.shared
        watch_dtmf = bool(self.policy.pause.dtmf_pause or self.policy.pause.dtmf_resume)
        held = self._held
        n = 0
        for ts, link, frame in packets:
            n += 1
            if ts >= self._next_timer:
                if self._next_timer >= 0:
                    self._timers(self.clock)
                self._next_timer = ts + TIMER_NS
            self.clock = ts
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
                        if by_serial is not None:
                            by_serial(call.serial, ts, flow, payload)
                        else:
                            sink_add(call, ts, flow, payload)
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
                if held is not None and self._hold(ts, link, frame, src, sport, dst, dport,
                                                   payload):
                    continue
                if not self._rtp_candidate(ts, src, sport, dst, dport, payload):
                    drops["udp_not_sip_or_known_media"] += 1
                continue
            self._vlan = outer_vlan(link, frame)
            self._sip(payload, ts, src, sport, dst, dport)
        self.packets += n

    def feed_indexed(self, index: PacketIndex, sink: ColumnSink,
                     between: Callable[[int], None] | None = None,
                     udp: UdpBatch | None = None) -> None:
        """Take a whole indexed capture: the same result as ``feed`` over its packets, with
        the RTP bulk routed on columns. The IPv4/UDP layout is decoded for every packet at
        once; a run of RTP-like packets between two packets of any other kind (SIP,
        tunnels, fragments, IPv6) and within one timer tick meets a media table that cannot
        change, so each of its flows is routed once and handed to ``sink`` whole. Runs
        holding media nobody announced (unsignalled RTP may be promoted to a call half-way)
        go packet by packet, as do all packets while the policy watches DTMF. ``between``
        is called every BETWEEN_PACKETS or so with the packets done (the shell writes the
        calls that ended meanwhile). A long capture comes as windows of its index: routes
        and duplicates carry over from one to the next until ``end_indexed``. ``udp`` is
        ``decode_udp(index)`` when the caller has it already."""
        n = len(index)
        if udp is None:
            udp = decode_udp(index)
        if self._router is None:
            self._router = Router(sink)
        self._router.window(index, udp)
        sink.window(index, udp)
        if n == 0:
            return
        fast = rtp_like(index, udp) & (udp.dport != HEP_PORT) & (udp.sport != HEP_PORT)
        if self.policy.pause.dtmf_pause or self.policy.pause.dtmf_resume:
            fast[:] = False  # a digit may pause a call between any two packets
        if self.dedup is not None:
            dup, self._dedup_tail = duplicates(index, udp, fast, self.dedup.window_ns,
                                               self._dedup_tail)
        else:
            dup = np.zeros(n, np.bool_)
        ts_all = index.ts_ns
        change = np.flatnonzero(np.diff(fast.astype(np.int8))) + 1
        bounds = [0, *change.tolist(), n]
        done = 0
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if between is not None and a - done >= BETWEEN_PACKETS:
                between(a)
                done = a
            if not fast[a]:
                self.feed(self._packets(index, sink, a, b))
                continue
            while a < b:
                nt = self._next_timer
                if nt >= 0 and ts_all[a] >= nt:
                    self._timers(self.clock)
                    self._next_timer = nt = int(ts_all[a]) + TIMER_NS
                elif nt < 0:
                    self._next_timer = nt = int(ts_all[a]) + TIMER_NS
                ahead = np.flatnonzero(ts_all[a + 1:b] >= nt)
                k = a + 1 + int(ahead[0]) if len(ahead) else b
                self._run(index, udp, dup, sink, a, k)
                a = k
                if between is not None and a - done >= BETWEEN_PACKETS:
                    between(a)
                    done = a

    def end_indexed(self) -> None:
        """The indexed capture is over: every call has its latest media time."""
        if self._router is None:
            return
        self._router.sync_all()
        self._router = None
        self._dedup_tail = {}

    def _packets(self, index: PacketIndex, sink: ColumnSink, a: int, b: int
                 ) -> Iterable[Packet]:
        return self._packets_kept(index, sink, np.arange(a, b))

    def _run(self, index: PacketIndex, udp: UdpBatch, dup: npt.NDArray[np.bool_],
             sink: ColumnSink, a: int, b: int) -> None:
        """RTP-like packets [a, b): no timer tick and no other packet among them."""
        router = self._router
        assert router is not None
        ts_all = index.ts_ns
        span = np.arange(a, b)
        d = dup[a:b]
        if d.any():
            self.drops["duplicate_packet"] += int(np.count_nonzero(d))
            span = span[~d]
        self.packets += b - a
        self.clock = int(ts_all[b - 1])
        if not len(span):
            return
        router.forget(self.media)
        sink.position = index.first + a
        slots = router.lookup(span)
        missing = slots < 0
        if missing.any():
            if not self._route_new(router, udp, span[missing]):
                # media nobody announced: packet by packet
                self.packets -= b - a
                self.feed(self._packets_kept(index, sink, span), dedup_here=False)
                self.packets += (b - a) - len(span)  # the duplicates were packets too
                self.clock = int(ts_all[b - 1])
                return
            slots = router.lookup(span)
            # flows routed but not given a slot (non-audio, too many, not recorded)
            for i in np.flatnonzero(slots < 0).tolist():
                self._unslotted(index, udp, int(span[i]))
            keep = slots >= 0
            span, slots = span[keep], slots[keep]
            if not len(span):
                return
        paused = router.paused(slots)
        if paused.any():
            for i in span[paused].tolist():
                slot = int(router.slot_of(i, slots, span))
                call, flow = router.slot_call[slot], router.slot_flow[slot]
                sink.position = index.first + i
                o = int(udp.payload[i])
                payload = index.data[o:o + int(udp.size[i])].tobytes()
                self.sink.add(call, int(ts_all[i]), flow, header_only(payload))
                if int(ts_all[i]) > call.last_ns:
                    call.last_ns = int(ts_all[i])
            self.paused_packets += int(np.count_nonzero(paused))
            self.media_packets += int(np.count_nonzero(paused))
            span, slots = span[~paused], slots[~paused]
        if len(span):
            sink.assign(span, slots)
            router.touch(slots, ts_all[span])
            self.media_packets += len(span)

    def _route_new(self, router: Router, udp: UdpBatch, rows: npt.NDArray[np.int64]
                   ) -> bool:
        """Route the flows of ``rows`` that have no slot, in the order of their first
        packet (a call numbers its new flows in that order); False when one belongs to no
        call (the caller goes packet by packet; nothing was changed)."""
        ka = udp.src[rows] << 16 | udp.sport[rows]
        kb = udp.dst[rows] << 16 | udp.dport[rows]
        pairs: dict[tuple[int, int], int] = {}
        for x, y, i in zip(ka.tolist(), kb.tolist(), rows.tolist(), strict=True):
            pairs.setdefault((x, y), i)
        routes = []
        for i in pairs.values():
            route = self._route(udp, i)
            if route is None:
                return False
            routes.append((i, route))
        for i, (call, flow, src_ep, dkey) in routes:
            decision = call.decision
            if decision is not None and not decision.record:
                continue
            if flow is None:
                pair = (src_ep, dkey)
                flow = call.flow_ids.get(pair)
                if flow is None:
                    flow = self._new_flow(call, pair)
                    if flow < 0:
                        # _new_flow counted this packet's drop; _unslotted counts the rest
                        router.first_seen[i] = True
                        continue
            if flow >= 0:
                router.add(i, call, flow)
        return True

    def _unslotted(self, index: PacketIndex, udp: UdpBatch, i: int) -> None:
        """A packet of a flow without a slot, as ``feed`` takes it: a call not recorded, a
        non-audio flow, or a call past its flow limit."""
        router = self._router
        assert router is not None
        route = self._route(udp, i)
        if route is None:
            return
        call, flow, src_ep, dkey = route
        decision = call.decision
        if decision is not None and not decision.record:
            self.drops["media_of_call_not_recorded"] += 1
            return
        if router.first_seen.pop(i, False):
            flow = call.flow_ids.get((src_ep, dkey), TOO_MANY)  # _new_flow's verdict
        elif flow is None:
            flow = self._new_flow(call, (src_ep, dkey))
        if flow == NON_AUDIO:
            self.drops["non_audio_media"] += 1
            ts = int(index.ts_ns[i])
            first = call.video_span[0] or ts
            call.video_span = (first, max(ts, call.video_span[1]))

    def _packets_kept(self, index: PacketIndex, sink: ColumnSink, rows: npt.NDArray[np.int64]
                      ) -> Iterable[Packet]:
        ts, link = index.ts_ns, index.link
        first = index.first
        for i in rows.tolist():
            sink.position = first + i
            yield int(ts[i]), int(link[i]), index.frame(i)

    def _route(self, udp: UdpBatch, i: int) -> Any:
        """Where packet ``i``'s flow goes, as ``feed`` decides it: (call, flow index or None
        for a flow the call has not seen, source, destination), or None (no call owns it)."""
        src = (int(udp.src[i]).to_bytes(4, "big"), int(udp.sport[i]))
        dkey = (int(udp.dst[i]).to_bytes(4, "big"), int(udp.dport[i]))
        media_get = self.media.lookup
        d_owner = media_get(dkey)
        s_owner = None if d_owner is not None else media_get(src)
        shared = self.media.shared
        if d_owner is not None and shared and dkey in shared:
            s_owner = media_get(src)
            if s_owner is not None and s_owner[0] != d_owner[0]:
                d_owner = self.media.owner_for(dkey, s_owner[0]) or d_owner
        owner = d_owner or s_owner
        if owner is None:
            return None
        call = self.tracker.calls.get(owner[0])
        if call is None:
            return None
        return (call, call.flow_ids.get((src, dkey)), src, dkey)

    # -- the shared media map ---------------------------------------------------------------

    def announce(self, a: Announcement) -> None:
        """Another process's word on a call whose signalling it sees: where the call's
        media arrives. Media of it reaching this process is recorded here, in a call of its
        own marked ``remote`` (its part of the recording), unless this process sees the
        call's signalling too."""
        call = self.tracker.calls.get(a.key)
        if a.active_ns:  # media still flows there: the call is not silent
            if call is not None and not call.remote and a.active_ns > call.last_ns:
                call.last_ns = a.active_ns
            return
        if call is not None and not call.remote:
            return  # its own SDP places its media here
        if call is None:
            if a.ended or not a.record:
                return
            call = self._adopt(a)
        if call is None:
            call = self.tracker.add_remote(a.key, a.call_id, a.start_ns, a.owner, self.clock)
            if call is None:
                return
            call.decision = Decision("shared")
            self._events.append(CallStarted(call))
        if not a.record:
            call.decision = Decision("shared", record=False)
        if a.ended or not a.record:  # its endpoints stay for the linger
            self.tracker.end_remote(call, self.clock)
            return
        self.media.set_remote(a.key, list(a.endpoints))
        # for a restarted process: where the call's audio arrives, as a call's offers say it
        call.offers = tuple([MediaOffer(ep[0], ep[1], {}, [], "sendrecv", 0, self.clock)
                             for ep, s, kind in a.endpoints if s == side and kind == RTP]
                            for side in (0, 1))  # type: ignore[assignment]
        for i, (src, dst, d_side, s_side, rtcp) in enumerate(call.flows):
            # each end's side as announced (the answer's ends may come only now)
            d_owner, s_owner = self.media.owner_for(dst, a.key), self.media.owner_for(src, a.key)
            call.flows[i] = (src, dst, d_owner[1] if d_owner else d_side,
                             s_owner[1] if s_owner else s_side,
                             int((d_owner or s_owner or (0, 0, rtcp))[2] == RTCP))
        self._events.append(MediaChanged(call, 0))
        self._release()

    def _adopt(self, a: Announcement) -> Call | None:
        """The unsignalled call this process made of media the announcement names (the
        announcement came after the media's hold ran out): it becomes the announced call's
        part here, its spool and flows kept."""
        for ep, _side, kind in a.endpoints:
            owner = self.media.get(ep) if kind == RTP else None
            call = self.tracker.calls.get(owner[0]) if owner is not None else None
            if call is not None and call.unsignalled:
                old = call.key
                self.tracker.rekey(call, a.key)
                call.call_id, call.start_ns, call.remote = a.call_id, a.start_ns, a.owner
                call.unsignalled, call.status = False, "answered"
                call.caller_uri = call.callee_uri = ""
                call.decision = Decision("shared")
                self._events.append(CallMoved(call, old))
                return call
        return None

    def _hold(self, ts: int, link: int, frame: bytes, src: bytes, sport: int, dst: bytes,
              dport: int, payload: bytes) -> bool:
        """Keep RTP- or RTCP-looking UDP nobody here announced, for HOLD_NS (RFC 3550
        section 5.1: version 2; ports below 1024 are no media)."""
        held = self._held
        if (held is None or len(payload) < 8 or payload[0] >> 6 != 2
                or min(sport, dport) < 1024 or self._held_bytes >= MAX_HELD_BYTES):
            return False
        key = (src, sport, dst, dport)
        frames = held.get(key)
        if frames is None:
            frames = held[key] = []
        frames.append((ts, link, frame))
        self._held_bytes += len(frame)
        return True

    def _release(self, expired_before: int = -1) -> None:
        """Held media whose call is known now goes to it; media held since before
        ``expired_before`` goes the unsignalled way (promoted or dropped)."""
        held = self._held
        if not held:
            return
        get = self.media.get
        ready = [k for k, frames in held.items()
                 if get((k[2], k[3])) is not None or get((k[0], k[1])) is not None
                 or frames[0][0] < expired_before]
        if not ready:
            return
        clock, packets, timer = self.clock, self.packets, self._next_timer
        # what has no owner now is not held again, and old packets run no timers
        self._held, self._next_timer = None, 1 << 62
        try:
            for k in ready:
                frames = held.pop(k)
                self._held_bytes -= sum(len(f[2]) for f in frames)
                self.feed(frames, dedup_here=False)
        finally:
            self._held = held
            self.clock, self.packets, self._next_timer = clock, packets, timer

    def _timers(self, now: int) -> None:
        if self._held is not None:  # shared: the owners hear that their calls' media flows
            if self._held:
                self._release(now - HOLD_NS)
            every = max(TIMER_NS, min(MAX_ACTIVITY_NS, self.settings.inactivity_ns // 4))
            told = self._told
            for call in self.tracker.calls.values():
                if call.remote and call.last_ns - told.get(call.serial, call.start_ns) >= every:
                    told[call.serial] = call.last_ns
                    self._events.append(MediaActive(call))
        if self._router is not None:
            self._router.sync_all()  # inactivity is judged on every call's latest media
        self._finished(self.tracker.handle_timer(now))
        if self.legs.waiting:
            for call in self.legs.expired(now):
                self._events.append(CallEnded(call, finished(call, self.policy.identity), ""))
        self.fragments.expire(now)
        self.tcp.expire(now)

    def _sip(self, data: bytes, ts: int, src: bytes, sport: int, dst: bytes, dport: int) -> None:
        if is_registration(data):  # in no dialog: counted as the tracker would, not parsed
            self.sip_packets += 1
            self.tracker.drops["sip_outside_invite_dialog"] += 1
            return
        try:
            msg = parse_sip(data)
        except SipError:
            self.drops["malformed_sip"] += 1
            return
        self.sip_packets += 1
        self._finished(self.tracker.handle_sip(msg, ts, (src, sport), (dst, dport), data))

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
                or min(sport, dport) < 1024 or len(payload) > MAX_CANDIDATE_BYTES):
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
            self.sink.add(call, t, flow, p)
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
        self._events.append(FlowAdded(call))
        return len(call.flows) - 1

    def _finished(self, events: list[Event]) -> None:
        """The tracker's events, completed with the policy's decision (at a call's start)
        and the call's record (at its end), queued for the shell."""
        for ev in events:
            if isinstance(ev, CallFinished):
                call = ev.call
                if self._router is not None:
                    self._router.sync_call(call)
                self._event_pts.pop(call.serial, None)
                self._told.pop(call.serial, None)
                if call.remote:  # media of a call signalled elsewhere: its part, if any
                    record = (finished(call, self.policy.identity)
                              if call.flows and call.decision.record else None)
                    self._events.append(CallEnded(call, record, "" if record else "remote"))
                    continue
                if self.stopping and call.end_reason == "end-of-input":
                    # still in progress when the recorder stopped (RFC 3261's dialog never
                    # ended)
                    call.status, call.end_reason = "interrupted", "interrupted"
                if call.decision is not None and not call.decision.record:
                    self.calls_skipped += 1
                    self._unlink(call)
                    self._events.append(CallEnded(call, None, "policy"))
                elif not call.responded and not call.flows:
                    # An INVITE nobody answered and no media: nothing to record (INVITE
                    # floods, scanners). Counted, not written.
                    self.drops["unanswered_invite_not_recorded"] += 1
                    self._unlink(call)
                    self._events.append(CallEnded(call, None, "unanswered"))
                else:
                    self._ended(call)
                continue
            if isinstance(ev, CallStarted):
                self.calls_found += 1
                call = ev.call
                call.source, call.vlan = self.source, self._vlan
                if self.refusing:
                    call.decision = Decision("disk-full", record=False)
                    self.calls_refused += 1
                elif call.decision is None:
                    call.decision = self.policy.decide_call(call, call.source, call.vlan)
                self.legs.started(call)
            elif isinstance(ev, MediaChanged):
                self._event_pts.pop(ev.call.serial, None)
            self._events.append(ev)

    def _ended(self, call: Call) -> None:
        """A recordable call ended: written now, or with its other leg once both ended."""
        identity = self.policy.identity
        if not self.settings.join_legs:  # each leg on its own, naming the other
            partner = self.legs.apart(call)
            related = (partner.call_id,) if partner is not None else ()
            self._events.append(CallEnded(call, replace(finished(call, identity),
                                                        related=related), ""))
            return
        other = self.legs.ended(call, self.clock)
        if other is not None:  # both legs over: one recording, the earlier leg first
            a, b = (other, call) if other.start_ns <= call.start_ns else (call, other)
            self._events.append(CallEnded(a, replace(finished(a, identity), legs=(b,)), ""))
        elif not self.legs.holds(call):
            self._events.append(CallEnded(call, finished(call, identity), ""))

    def _unlink(self, call: Call) -> None:
        """A call not recorded: its other leg, waiting or not, is written on its own."""
        partner = self.legs.partner.get(call.serial)
        waiting = partner is not None and self.legs.holds(partner)
        self.legs.release(call)
        if partner is not None and waiting:
            self.legs.release(partner)
            self._events.append(CallEnded(partner, finished(partner, self.policy.identity),
                                          ""))

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
