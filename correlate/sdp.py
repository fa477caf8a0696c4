"""SDP parser (RFC 8866): connection, media, rtpmap/fmtp, ptime and direction attributes."""

from __future__ import annotations

from capture.decode import parse_ip
from correlate.errors import SdpError

# Media sections per body; offers with more than a handful are hostile or broken.
MAX_MEDIA = 32
# Lines per body.
MAX_LINES = 2048
# a=crypto lines kept per media section; offers list a few suites.
MAX_CRYPTO = 8

DIRECTIONS = frozenset(("sendrecv", "sendonly", "recvonly", "inactive"))


class Media:
    """One m= section with the attributes that apply to it."""

    __slots__ = (
        "kind", "port", "proto", "formats", "addr", "rtpmap", "fmtp", "ptime", "direction",
        "crypto",
    )

    def __init__(self, kind: str, port: int, proto: str, formats: list[str]) -> None:
        self.kind = kind
        """Media type: audio, video, image, application."""
        self.port = port
        """Transport port; 0 means the stream is rejected or disabled."""
        self.proto = proto
        """Transport protocol, e.g. RTP/AVP, RTP/SAVP, udptl."""
        self.formats = formats
        """Format list (payload type numbers for RTP)."""
        self.addr: bytes | None = None
        """Packed connection address (media-level c= or the session's), None when unset."""
        self.rtpmap: dict[int, tuple[str, int, int]] = {}
        """Payload type to (encoding name, clock rate, channels)."""
        self.fmtp: dict[int, str] = {}
        """Payload type to its fmtp parameters."""
        self.ptime = 0
        """Packet time in milliseconds, 0 when not given."""
        self.direction = "sendrecv"
        """Direction attribute (RFC 8866 section 6.7), media level over session level."""
        self.crypto: list[str] = []
        """a=crypto values (RFC 4568), unparsed."""


class Sdp:
    """A parsed session description."""

    __slots__ = ("origin", "media")

    def __init__(self, origin: str, media: list[Media]) -> None:
        self.origin = origin
        """The o= line value."""
        self.media = media
        """Media sections in order."""


def parse_sdp(body: bytes) -> Sdp:
    """Parse an SDP body."""
    text = body.decode("utf-8", "replace")
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_LINES:
        raise SdpError(f"more than {MAX_LINES} lines")
    if not lines or not lines[0].startswith("v="):
        raise SdpError("does not start with v=")
    origin = ""
    session_addr: bytes | None = None
    session_dir = "sendrecv"
    media: list[Media] = []
    cur: Media | None = None
    for line in lines:
        line = line.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "o" and cur is None:
            origin = value
        elif kind == "c":
            # c=<nettype> <addrtype> <connection-address>[/ttl][/n] (RFC 8866 section 5.7)
            parts = value.split()
            if len(parts) < 3:
                raise SdpError(f"bad c= line {value[:40]!r}")
            addr = parse_ip(parts[2].split("/")[0])
            if cur is None:
                session_addr = addr
            else:
                cur.addr = addr
        elif kind == "m":
            parts = value.split()
            if len(parts) < 3:
                raise SdpError(f"bad m= line {value[:40]!r}")
            port_text = parts[1].split("/")[0]
            if not port_text.isdigit() or int(port_text) > 65535:
                raise SdpError(f"bad m= port {parts[1][:12]!r}")
            if len(media) >= MAX_MEDIA:
                raise SdpError(f"more than {MAX_MEDIA} m= lines")
            cur = Media(parts[0].lower(), int(port_text), parts[2], parts[3:])
            cur.direction = session_dir
            media.append(cur)
        elif kind == "a":
            name, _, val = value.partition(":")
            if name in DIRECTIONS:
                if cur is None:
                    session_dir = name
                else:
                    cur.direction = name
            elif cur is None:
                continue
            elif name == "rtpmap":
                pt_text, _, enc = val.partition(" ")
                fields = enc.strip().split("/")
                if pt_text.isdigit() and len(fields) >= 2 and fields[1].isdigit():
                    chans = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 1
                    cur.rtpmap[int(pt_text)] = (fields[0], int(fields[1]), chans)
            elif name == "fmtp":
                pt_text, _, params = val.partition(" ")
                if pt_text.isdigit():
                    cur.fmtp[int(pt_text)] = params.strip()
            elif name == "crypto" and len(cur.crypto) < MAX_CRYPTO:
                cur.crypto.append(val.strip())
            elif name == "ptime" and val.strip().split(".")[0].isdigit():
                cur.ptime = int(val.strip().split(".")[0])
    for m in media:
        if m.addr is None:
            m.addr = session_addr
    return Sdp(origin, media)
