"""SIP over TCP (RFC 3261 section 18.3) and over WebSocket (RFC 7118), from mirrored
segments: per-direction stream reassembly, Content-Length framing, bounded everything.

Sans-IO: ``feed`` takes a TCP segment and its capture time and returns the SIP messages
completed by it. Any port: a stream is taken for SIP by what it carries.
"""

from __future__ import annotations

import re
import struct
from collections import Counter

from correlate.sip import MAX_MESSAGE

NS = 1_000_000_000
# Streams followed at once; the oldest is dropped when a scan or flood opens more.
MAX_STREAMS = 16_384
# Out-of-order segments held per stream while a gap waits to be filled.
MAX_OOO_SEGMENTS = 64
# Bytes buffered per stream: one whole SIP message (the parser's own bound) and a bit.
MAX_BUFFER = MAX_MESSAGE + 65_536
# Probes of PROBE_BYTES without a SIP start line before a stream is judged not to be SIP.
MAX_PROBE_SEGMENTS = 8
PROBE_BYTES = 4096
# A stream silent for this long (capture time) is forgotten.
IDLE_NS = 300 * NS
# Bytes buffered across all streams; past it the oldest streams are forgotten first.
MAX_TOTAL_BYTES = 64 * 1024 * 1024

_TCP = struct.Struct("!HHIIBB")
_START = re.compile(rb"(?:^|\r?\n)((?:[A-Z]+ [^ \r\n]+ SIP/2\.0|SIP/2\.0 \d{3} [^\r\n]*)\r?\n)")
_CLEN = re.compile(rb"\r?\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", re.IGNORECASE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")

UNKNOWN, SIP, WEBSOCKET, NOT_SIP = range(4)

StreamKey = tuple[bytes, int, bytes, int]


class _Stream:
    __slots__ = ("next_seq", "buf", "ooo", "mode", "synced", "probes", "last_ns")

    def __init__(self, next_seq: int, ts_ns: int) -> None:
        self.next_seq = next_seq
        self.buf = bytearray()
        self.ooo: dict[int, bytes] = {}
        self.mode = UNKNOWN
        self.synced = False
        self.probes = 0
        self.last_ns = ts_ns


def _size(st: _Stream) -> int:
    return len(st.buf) + sum(len(v) for v in st.ooo.values())


def _after(a: int, b: int) -> int:
    """Signed distance from sequence number ``b`` to ``a`` (RFC 793 modular arithmetic)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


class TcpSip:
    """Reassembles TCP streams and cuts them into SIP messages."""

    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        self._streams: dict[StreamKey, _Stream] = {}
        self.max_streams = max_streams
        self.max_total_bytes = MAX_TOTAL_BYTES
        self._bytes = 0
        self.drops: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._streams)

    def feed(self, ts_ns: int, src: bytes, sport: int, dst: bytes, dport: int,
             segment: bytes) -> list[bytes]:
        if len(segment) < 20:
            self.drops["truncated_tcp_header"] += 1
            return []
        _sp, _dp, seq, _ack, offx, flags = _TCP.unpack_from(segment, 0)
        hlen = (offx >> 4) * 4
        if hlen < 20 or hlen > len(segment):
            self.drops["bad_tcp_header"] += 1
            return []
        data = segment[hlen:]
        key = (src, sport, dst, dport)
        st = self._streams.get(key)
        if flags & 0x04:  # RST
            self._forget(key)
            return []
        if st is None:
            if not data and not flags & 0x02:
                return []
            if len(self._streams) >= self.max_streams:
                self._forget(next(iter(self._streams)))
                self.drops["tcp_stream_table_full"] += 1
            # RFC 793: SYN takes one sequence number; without it we join mid-stream.
            st = self._streams[key] = _Stream((seq + 1) & 0xFFFFFFFF if flags & 0x02 else seq,
                                              ts_ns)
            if flags & 0x02:
                return []
        st.last_ns = ts_ns
        if st.mode == NOT_SIP:
            if flags & 0x01:
                self._forget(key)
            return []
        before = _size(st)
        out = self._take(st, seq, data) if data else []
        self._bytes += _size(st) - before
        if flags & 0x01:  # FIN: nothing more will come this way
            self._forget(key)
        while self._bytes > self.max_total_bytes and self._streams:
            self.drops["tcp_memory_limit"] += 1
            self._forget(next(iter(self._streams)))
        return out

    def _forget(self, key: StreamKey) -> None:
        st = self._streams.pop(key, None)
        if st is not None:
            self._bytes -= _size(st)

    def _take(self, st: _Stream, seq: int, data: bytes) -> list[bytes]:
        d = _after(seq, st.next_seq)
        if d < 0:  # retransmission or overlap: keep only what is new
            if -d >= len(data):
                return []
            data, seq = data[-d:], st.next_seq
            d = 0
        if d > 0:
            if len(st.ooo) >= MAX_OOO_SEGMENTS:
                # the gap will not be filled: skip it and find the next message start
                self.drops["tcp_gap_skipped"] += 1
                first = min(st.ooo, key=lambda s: _after(s, st.next_seq))
                st.buf.clear()
                st.synced = False
                st.next_seq = first
                self._drain(st)
                return self._take(st, seq, data)
            st.ooo[seq] = data
            return []
        st.buf += data
        st.next_seq = (st.next_seq + len(data)) & 0xFFFFFFFF
        self._drain(st)
        return self._frames(st)

    def _drain(self, st: _Stream) -> None:
        while st.ooo:
            nxt = None
            for s in list(st.ooo):
                d = _after(s, st.next_seq)
                if d <= 0:
                    chunk = st.ooo.pop(s)
                    if -d < len(chunk):
                        st.buf += chunk[-d:]
                        st.next_seq = (st.next_seq + len(chunk) + d) & 0xFFFFFFFF
                        nxt = s
            if nxt is None:
                return

    def _frames(self, st: _Stream) -> list[bytes]:
        out: list[bytes] = []
        if st.mode == UNKNOWN:
            if st.buf.startswith((b"GET ", b"HTTP/1.1 101")):
                head_end = st.buf.find(b"\r\n\r\n")
                if head_end < 0 and len(st.buf) < PROBE_BYTES:
                    return out  # the upgrade request is still coming
                if b"websocket" in st.buf[: max(head_end, 0) or PROBE_BYTES].lower():
                    st.mode = WEBSOCKET
            if st.mode == UNKNOWN and _START.search(st.buf):
                st.mode = SIP
            if st.mode == UNKNOWN:
                if len(st.buf) < PROBE_BYTES:
                    return out  # a start line may still be completing
                st.probes += 1
                if st.probes >= MAX_PROBE_SEGMENTS:
                    st.mode = NOT_SIP
                    self.drops["tcp_not_sip"] += 1
                del st.buf[:-512]  # keep a tail: it may hold the start of a start line
                return out
        if st.mode == WEBSOCKET:
            return self._websocket(st)
        while True:
            if not st.synced:
                m = _START.search(st.buf)
                if m is None:
                    if len(st.buf) > MAX_BUFFER:
                        st.buf.clear()
                    return out
                del st.buf[: m.start(1)]
                st.synced = True
            while st.buf[:2] == b"\r\n":  # keep-alive CRLFs (RFC 5626 section 4.4.1)
                del st.buf[:2]
            end = _HEAD_END.search(st.buf)
            if end is None:
                if len(st.buf) > MAX_BUFFER:
                    self.drops["sip_message_too_large"] += 1
                    st.buf.clear()
                    st.synced = False
                return out
            clen = _CLEN.search(st.buf, 0, end.start() + 2)
            # RFC 3261 section 18.3: over a stream, Content-Length is mandatory.
            total = end.end() + (int(clen.group(1)) if clen else 0)
            if total > MAX_BUFFER:
                self.drops["sip_message_too_large"] += 1
                st.buf.clear()
                st.synced = False
                return out
            if len(st.buf) < total:
                return out
            out.append(bytes(st.buf[:total]))
            del st.buf[:total]
            if not st.buf:
                return out

    def _websocket(self, st: _Stream) -> list[bytes]:
        """RFC 6455 frames after the HTTP upgrade; each message is one SIP message (RFC 7118)."""
        out: list[bytes] = []
        if not st.synced:
            end = st.buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            del st.buf[: end + 4]
            st.synced = True
        while len(st.buf) >= 2:
            b0, b1 = st.buf[0], st.buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(st.buf) < 4:
                    return out
                n, pos = struct.unpack_from("!H", st.buf, 2)[0], 4
            elif n == 127:
                if len(st.buf) < 10:
                    return out
                n, pos = struct.unpack_from("!Q", st.buf, 2)[0], 10
            if n > MAX_BUFFER:
                self.drops["websocket_frame_too_large"] += 1
                st.buf.clear()
                st.mode = NOT_SIP
                return out
            mask = b""
            if b1 & 0x80:
                mask, pos = bytes(st.buf[pos : pos + 4]), pos + 4
            if len(st.buf) < pos + n:
                return out
            payload = bytes(st.buf[pos : pos + n])
            del st.buf[: pos + n]
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if b0 & 0x0F in (1, 2) and payload:  # text or binary frame
                out.append(payload)
        return out

    def expire(self, now_ns: int) -> None:
        """Forget streams silent for IDLE_NS."""
        for key, st in list(self._streams.items()):
            if now_ns - st.last_ns >= IDLE_NS:
                self._forget(key)
