"""HEP (Homer Encapsulation Protocol) v2 and v3: packets forwarded by capture agents.

Sans-IO: ``parse_hep`` takes a UDP payload and returns what the agent captured, with its
own capture time, or raises HepError.
"""

from __future__ import annotations

import struct
import zlib

from capture.errors import CaptureError

HEP_PORT = 9060
# A HEP payload is one SIP message or one RTP/RTCP packet; bigger is broken or hostile
# (this also bounds what a compressed payload may expand to).
MAX_PAYLOAD = 256 * 1024
# Chunks per HEP3 packet; agents send about fifteen.
MAX_CHUNKS = 64

PROTO_SIP = 1
PROTO_RTP = 34  # HEP3 protocol type numbers (HEP3 specification, chunk 0x000b)

_CHUNK = struct.Struct("!HHH")
_V2 = struct.Struct("!BBBBHH")

Hep = tuple[int | None, int, bytes, bytes, int, int, bytes, int]
"""(capture time ns or None, transport protocol, source, destination, source port,
destination port, payload, HEP protocol type: 1 SIP, 5 RTCP, 34 RTP, 0 unknown)."""


class HepError(CaptureError):
    """A HEP packet that cannot be parsed."""


def is_hep(payload: bytes, dport: int) -> bool:
    """HEP3 by its magic on any port; HEPv2 by its version byte on the HEP port."""
    return payload[:4] == b"HEP3" or (
        dport == HEP_PORT and len(payload) > 16 and payload[0] == 2 and payload[2] in (2, 10)
    )


def parse_hep(payload: bytes) -> Hep:
    if payload[:4] == b"HEP3":
        return _hep3(payload)
    return _hep2(payload)


def _hep3(data: bytes) -> Hep:
    if len(data) < 6:
        raise HepError("HEP3 header is truncated")
    total = struct.unpack_from("!H", data, 4)[0]
    if total > len(data) or total < 6:
        raise HepError(f"HEP3 length {total} does not match the {len(data)} bytes present")
    pos = 6
    sec = usec = None
    proto = 17
    src = dst = b""
    sport = dport = 0
    kind = 0
    body = b""
    for _ in range(MAX_CHUNKS):
        if pos + 6 > total:
            break
        vendor, ctype, clen = _CHUNK.unpack_from(data, pos)
        if clen < 6 or pos + clen > total:
            raise HepError(f"HEP3 chunk {ctype} has length {clen}")
        val = data[pos + 6 : pos + clen]
        pos += clen
        if vendor != 0:
            continue
        if ctype == 2 and val:
            proto = val[0]
        elif ctype in (3, 5):
            src = val
        elif ctype in (4, 6):
            dst = val
        elif ctype == 7 and len(val) == 2:
            sport = struct.unpack("!H", val)[0]
        elif ctype == 8 and len(val) == 2:
            dport = struct.unpack("!H", val)[0]
        elif ctype == 9 and len(val) == 4:
            sec = struct.unpack("!I", val)[0]
        elif ctype == 10 and len(val) == 4:
            usec = struct.unpack("!I", val)[0]
        elif ctype == 11 and val:
            kind = val[0]
        elif ctype == 15:
            body = val
        elif ctype == 16:
            body = _inflate(val)
    if len(src) not in (4, 16) or len(dst) != len(src):
        raise HepError("HEP3 packet without source and destination addresses")
    if len(body) > MAX_PAYLOAD:
        raise HepError("HEP3 payload too large")
    ts = sec * 1_000_000_000 + (usec or 0) * 1000 if sec is not None else None
    return ts, proto, src, dst, sport, dport, body, kind


def _inflate(val: bytes) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(val, MAX_PAYLOAD + 1)
    except zlib.error as exc:
        raise HepError(f"HEP3 compressed payload: {exc}") from None
    if len(out) > MAX_PAYLOAD:
        raise HepError("HEP3 compressed payload expands too far")
    return out


def _hep2(data: bytes) -> Hep:
    if len(data) < 8:
        raise HepError("HEPv2 header is truncated")
    version, hlen, family, proto, sport, dport = _V2.unpack_from(data, 0)
    alen = 4 if family == 2 else 16
    need = 8 + 2 * alen + (12 if version == 2 else 0)
    if version not in (1, 2) or len(data) < need:
        raise HepError(f"HEPv{version} header is truncated or unknown")
    src = data[8 : 8 + alen]
    dst = data[8 + alen : 8 + 2 * alen]
    pos = 8 + 2 * alen
    ts = None
    if version == 2:
        # HEPv2 writes the time in the agent's byte order, little-endian in practice
        sec, usec = struct.unpack_from("<II", data, pos)
        ts = sec * 1_000_000_000 + usec * 1000
        pos += 12
    return ts, proto, src, dst, sport, dport, data[pos:], PROTO_SIP


def build_hep3(ts_ns: int, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes,
               kind: int = PROTO_SIP, compress: bool = False) -> bytes:
    """A HEP3 packet (for the generator and tests)."""
    fam = 2 if len(src) == 4 else 10
    chunks = [(1, bytes([fam])), (2, bytes([17])), (3 if fam == 2 else 5, src),
              (4 if fam == 2 else 6, dst), (7, struct.pack("!H", sport)),
              (8, struct.pack("!H", dport)), (9, struct.pack("!I", ts_ns // 1_000_000_000)),
              (10, struct.pack("!I", ts_ns % 1_000_000_000 // 1000)), (11, bytes([kind])),
              (12, struct.pack("!I", 2001)),
              (16, zlib.compress(payload)) if compress else (15, payload)]
    body = b"".join(_CHUNK.pack(0, t, 6 + len(v)) + v for t, v in chunks)
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body
