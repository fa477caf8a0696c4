"""Media routing on columns for an indexed capture: each (call, flow) a slot, the flows
seen so far looked up for a whole run of packets at once, a flow's route forgotten when the
media table changes one of its endpoints; per slot the latest packet time, handed to its
call when a timer or the call's end needs it. Also the sinks the Recorder hands media to.
Sans-IO."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from capture.distinct import present
from capture.index import PacketIndex
from capture.spool import SpoolSet
from capture.vector import UdpBatch
from correlate.call import Call
from correlate.media import MediaTable


class MediaSink(Protocol):
    """Where the Recorder puts each media packet it routes to a call (a spool, a sampler)."""

    def add(self, call: Call, ts_ns: int, flow: int, payload: bytes) -> None: ...


class SpoolSink:
    """The MediaSink of a shell that spools: each call's packets in its spool file."""

    def __init__(self, spool: SpoolSet) -> None:
        self.spool = spool
        self.by_serial = spool.add
        """``add`` by the call's serial (the Recorder calls it straight)."""

    def add(self, call: Call, ts_ns: int, flow: int, payload: bytes) -> None:
        self.spool.add(call.serial, ts_ns, flow, payload)


class ColumnSink(MediaSink, Protocol):
    """A sink that also takes packets of an indexed capture by index (``feed_indexed``):
    each (call, flow) gets a slot, and runs of packets are assigned to slots at once.
    ``position`` is the index of the packet being fed when ``add`` or ``slot`` is called."""

    position: int
    udp: UdpBatch | None
    """The capture's IPv4/UDP columns, set by ``feed_indexed``."""

    def window(self, index: PacketIndex, udp: UdpBatch) -> None:
        """The packets of ``assign`` from now on are of this window of the capture."""
        ...

    def slot(self, call: Call, flow: int) -> int:
        """A new slot for ``call``'s ``flow``."""
        ...

    def assign(self, packets: npt.NDArray[np.int64], slots: npt.NDArray[np.int64]) -> None:
        """These packets (indices into the capture) belong to these slots."""
        ...

    def slots_of(self, call: Call) -> list[int]:
        """The slots given to ``call``."""
        ...


class Router:
    """Flow routing of one indexed capture on columns: each (call, flow) a slot, the flows
    seen so far looked up for a whole run at once, a flow's route forgotten when the media
    table changes an endpoint of it; per slot the latest packet time, handed to its call
    when a timer or the call's end needs it."""

    def __init__(self, sink: ColumnSink) -> None:
        self.sink = sink
        self.ka = np.zeros(0, np.int64)
        self.kb = np.zeros(0, np.int64)
        self.routes: dict[tuple[int, int], int] = {}
        """(source, destination) -> slot."""
        self.by_endpoint: dict[tuple[bytes, int], set[tuple[int, int]]] = {}
        self.slot_call: list[Call] = []
        self.slot_flow: list[int] = []
        self.slot_last = np.zeros(0, np.int64)
        self.slot_synced = np.zeros(0, np.int64)
        self.first_seen: dict[int, bool] = {}
        """Packets whose flow _new_flow refused just now (counted there already)."""
        self._sorted: tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64],
                            npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None

    def window(self, index: PacketIndex, udp: UdpBatch) -> None:
        """The next window of the capture's index: its packets' flows."""
        self.ka = udp.src << 16 | udp.sport
        self.kb = udp.dst << 16 | udp.dport
        self.first_seen.clear()

    def forget(self, media: MediaTable) -> None:
        """Drop the routes of flows touching an endpoint whose owners changed."""
        changed = media.changed
        media.changed = set()
        if changed is not None and not changed:
            return
        if changed is None or None in changed:  # not watched until now, or too many
            self.routes.clear()
            self.by_endpoint.clear()
        else:
            for ep in changed:
                if ep is None:
                    continue
                for pair in self.by_endpoint.pop(ep, ()):
                    self.routes.pop(pair, None)
        self._sorted = None

    def add(self, i: int, call: Call, flow: int) -> None:
        """Packet ``i``'s flow goes to ``call``'s ``flow``."""
        slot = self.sink.slot(call, flow)
        assert slot == len(self.slot_call)
        self.slot_call.append(call)
        self.slot_flow.append(flow)
        if slot >= len(self.slot_last):
            grow = max(64, 2 * len(self.slot_last))
            self.slot_last = np.concatenate((self.slot_last, np.zeros(grow, np.int64)))
            self.slot_synced = np.concatenate((self.slot_synced, np.zeros(grow, np.int64)))
        pair = (int(self.ka[i]), int(self.kb[i]))
        self.routes[pair] = slot
        for ep in (_endpoint(pair[0]), _endpoint(pair[1])):
            self.by_endpoint.setdefault(ep, set()).add(pair)
        self._sorted = None

    def lookup(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Slot of each packet's flow, -1 where the flow has none."""
        if self._sorted is None:
            pairs = list(self.routes)
            ka = np.array([p[0] for p in pairs], np.int64)
            kb = np.array([p[1] for p in pairs], np.int64)
            code = _code(ka, kb)
            order = np.argsort(code, kind="stable")
            slots = np.array([self.routes[p] for p in pairs], np.int64)
            self._sorted = (code[order], ka[order], kb[order], slots[order])
        code_s, ka_s, kb_s, slot_s = self._sorted
        out = np.full(len(rows), -1, np.int64)
        if not len(code_s):
            return out
        code = _code(self.ka[rows], self.kb[rows])
        at = np.minimum(np.searchsorted(code_s, code), len(code_s) - 1)
        hit = (code_s[at] == code) & (ka_s[at] == self.ka[rows]) & (kb_s[at] == self.kb[rows])
        out[hit] = slot_s[at[hit]]
        return out

    def paused(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Packets whose call is paused now (only RTP headers are kept of those)."""
        out = np.zeros(len(slots), np.bool_)
        for slot in present(slots):
            call = self.slot_call[slot]
            if call.pauses and call.pauses[-1][1] == 0:
                out |= slots == slot
        return out

    def slot_of(self, i: int, slots: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]
                ) -> int:
        return int(slots[int(np.searchsorted(rows, i))])

    def touch(self, slots: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]) -> None:
        np.maximum.at(self.slot_last, slots, ts)

    def sync_all(self) -> None:
        """Every call's last_ns from its slots' latest packets."""
        n = len(self.slot_call)
        moved = np.flatnonzero(self.slot_last[:n] > self.slot_synced[:n])
        for slot in moved.tolist():
            call = self.slot_call[slot]
            t = int(self.slot_last[slot])
            if t > call.last_ns:
                call.last_ns = t
        self.slot_synced[:n] = self.slot_last[:n]

    def sync_call(self, call: Call) -> None:
        for slot in self.sink.slots_of(call):
            t = int(self.slot_last[slot])
            if t > call.last_ns:
                call.last_ns = t


def _code(ka: npt.NDArray[np.int64], kb: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """A 64-bit sort key of flows (source and destination, address and port each); equal
    keys are checked on both halves, so a collision costs a lookup, never a wrong route."""
    return (ka.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ kb.astype(np.uint64)


def _endpoint(code: int) -> tuple[bytes, int]:
    return ((code >> 16).to_bytes(4, "big"), code & 0xFFFF)
