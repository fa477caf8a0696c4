"""SIP message parser (RFC 3261 section 7): start line, headers, compact forms, body.

Only what a recorder uses is extracted; everything is decoded as UTF-8 with replacement,
so a hostile byte never raises anything but ``SipError``.
"""

from __future__ import annotations

import re

from correlate.errors import SipError

# A SIP message over UDP fits a datagram; over TCP RFC 3261 allows more, but a recorder
# has no use for multi-megabyte bodies.
MAX_MESSAGE = 256 * 1024
# Header lines per message; real messages have tens.
MAX_HEADERS = 256

# RFC 3261 section 7.3.3 compact forms (plus RFC 3515/3903/4028 ones seen in the field).
COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "c": "content-type",
    "l": "content-length",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
}

# The methods of RFC 3261 and its extensions as one string each.
_METHODS = {m: m for m in ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
                           "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE",
                           "UPDATE")}
_FIRST = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def looks_like_sip(payload: bytes) -> bool:
    """Cheap content test: a SIP start line (RFC 3261 section 7.1/7.2) in the first bytes."""
    if not payload or payload[0] not in _FIRST:
        return False
    if payload.startswith(b"SIP/2.0 "):
        return True
    eol = payload.find(b"\n", 0, 512)
    if eol < 0:
        return False
    return payload[:eol].rstrip(b"\r").endswith(b" SIP/2.0")


# A response's CSeq naming REGISTER, its header name in any case (RFC 3261 section 7.3.1).
_REGISTER_CSEQ = re.compile(rb"^cseq[ \t]*:[ \t]*[0-9]+[ \t]+register[ \t]*\r?$",
                            re.IGNORECASE | re.MULTILINE)


def _head_end(data: bytes) -> tuple[int, int]:
    """Where the headers end and how long the empty line after them is (-1, 0 without
    one): CRLF CRLF, or LF LF where some agents end lines with LF alone."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, 2 if lf >= 0 else 0


def is_registration(data: bytes) -> bool:
    """A whole REGISTER request or response to one, told from its start line or CSeq
    without parsing the message: registrations are never part of a dialog (RFC 3261
    section 10), and on a mirror port they are often most of the SIP there is. A message
    without the empty line after its headers is not one (the parser reports it)."""
    if len(data) > MAX_MESSAGE:
        return False
    end, _ = _head_end(data)  # the headers end where parse_sip says they do
    if end < 0:
        return False
    if data.startswith(b"REGISTER "):
        return True
    # the pattern only where the word is (in the usual cases): most responses are not
    return (data.startswith(b"SIP/2.0 ")
            and (data.find(b"EGISTER", 0, end) >= 0 or data.find(b"egister", 0, end) >= 0)
            and _REGISTER_CSEQ.search(data, 0, end) is not None)


class NameAddr:
    """A From/To value."""

    __slots__ = ("display", "uri", "tag")

    def __init__(self, display: str, uri: str, tag: str) -> None:
        self.display = display
        """Display name without quotes, '' when absent."""
        self.uri = uri
        """The URI (sip:, sips:, tel:), without angle brackets."""
        self.tag = tag
        """The tag parameter, '' when absent."""


class SipMessage:
    """One parsed SIP request or response."""

    __slots__ = (
        "method",
        "status",
        "reason",
        "uri",
        "headers",
        "body",
        "call_id",
        "from_",
        "to",
        "cseq",
        "cseq_method",
    )

    def __init__(
        self,
        method: str,
        status: int,
        reason: str,
        uri: str,
        headers: dict[str, list[str]],
        body: bytes,
    ) -> None:
        self.method = method
        """Request method, '' for a response."""
        self.status = status
        """Response status code, 0 for a request."""
        self.reason = reason
        """Response reason phrase."""
        self.uri = uri
        """Request-URI, '' for a response."""
        self.headers = headers
        """Lower-case full header names (compact forms expanded) to their values in order."""
        self.body = body
        """Message body bytes, cut to Content-Length."""
        call_id = self.header("call-id")
        if not call_id:
            raise SipError("missing Call-ID header")
        self.call_id = call_id
        """Call-ID value."""
        self.from_ = parse_name_addr(self.header("from"), "From")
        """Parsed From header."""
        self.to = parse_name_addr(self.header("to"), "To")
        """Parsed To header."""
        cseq = self.header("cseq").split()
        if len(cseq) != 2 or not cseq[0].isdigit():
            raise SipError(f"bad CSeq header {self.header('cseq')[:40]!r}")
        self.cseq = int(cseq[0])
        """CSeq sequence number."""
        self.cseq_method = cseq[1].upper()
        """CSeq method; tells which request a response answers."""

    @property
    def is_request(self) -> bool:
        return self.status == 0

    def header(self, name: str) -> str:
        """First value of a header (full lower-case name), '' when absent."""
        vals = self.headers.get(name)
        return vals[0] if vals else ""

    def sdp(self) -> bytes | None:
        """The SDP body, looking inside multipart bodies (RFC 5621); None when there is none."""
        ctype = self.header("content-type")
        return find_sdp(ctype, self.body)


def find_sdp(ctype: str, body: bytes, depth: int = 0) -> bytes | None:
    """Return the application/sdp part of a body of type ``ctype``."""
    main = ctype.split(";", 1)[0].strip().lower()
    if main == "application/sdp" or (not main and body.lstrip().startswith(b"v=0")):
        return body
    # Nested multiparts deeper than this are not SDP carriers seen in practice.
    if not main.startswith("multipart/") or depth > 3:
        return None
    boundary = ""
    for param in ctype.split(";")[1:]:
        key, _, val = param.partition("=")
        if key.strip().lower() == "boundary":
            boundary = val.strip().strip('"')
    if not boundary:
        return None
    delim = b"--" + boundary.encode("utf-8", "replace")
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        part = part[2:] if part.startswith(b"\r\n") else part.lstrip(b"\n")
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
        ptype = ""
        for line in head.decode("utf-8", "replace").splitlines():
            key, _, val = line.partition(":")
            if key.strip().lower() in ("content-type", "c"):
                ptype = val.strip()
        if content.endswith(b"\r\n"):
            content = content[:-2]
        found = find_sdp(ptype, content, depth + 1)
        if found is not None and ptype:
            return found
    return None


# From/To values whose parse is kept: a dialog's messages repeat them (the INVITE's From is
# its responses', ACK's and BYE's), and a handful of values covers the dialogs in flight.
NAME_ADDR_CACHE = 4096
_name_addrs: dict[str, NameAddr] = {}
# Header names (as written) whose canonical form is kept: agents write a few dozen.
HEADER_NAME_CACHE = 1024
_header_names: dict[str, str] = {}


def parse_name_addr(value: str, what: str) -> NameAddr:
    """Parse a From/To value (RFC 3261 section 20.20/20.39)."""
    got = _name_addrs.get(value)
    if got is not None:
        return got
    parsed = _parse_name_addr(value, what)
    if len(_name_addrs) >= NAME_ADDR_CACHE:
        _name_addrs.clear()  # a new set of dialogs: the old values are not coming back
    _name_addrs[value] = parsed
    return parsed


def _parse_name_addr(value: str, what: str) -> NameAddr:
    value = value.strip()
    if not value:
        raise SipError(f"missing {what} header")
    display = ""
    params = ""
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt)
        if gt < 0:
            raise SipError(f"{what} header has '<' without '>'")
        display = value[:lt].strip().strip('"').strip()
        uri = value[lt + 1 : gt].strip()
        params = value[gt + 1 :]
    else:
        # addr-spec form: header parameters follow the first ';'
        uri, _, rest = value.partition(";")
        uri = uri.strip()
        params = ";" + rest if rest else ""
    tag = ""
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "tag":
            tag = val.strip()
    return NameAddr(display, uri, tag)


def parse_sip(data: bytes) -> SipMessage:
    """Parse one SIP message from ``data`` (a whole datagram)."""
    if len(data) > MAX_MESSAGE:
        raise SipError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    end, gap = _head_end(data)
    if end < 0:
        # RFC 3261 section 7: the empty line is mandatory even without a body.
        raise SipError("no empty line after the headers")
    head, body = data[:end], data[end + gap :]
    lines = head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    method = reason = uri = ""
    status = 0
    if start.startswith("SIP/2.0 "):
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            raise SipError(f"bad status line {start[:60]!r}")
        status = int(parts[1])
        if status < 100 or status > 699:
            raise SipError(f"status code {status} outside 100-699")
        reason = parts[2] if len(parts) > 2 else ""
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
            raise SipError(f"bad request line {start[:60]!r}")
        method, uri = parts[0].upper(), parts[1]
        method = _METHODS.get(method, method)  # one shared string: calls keep them
    headers: dict[str, list[str]] = {}
    last = ""
    if len(lines) - 1 > MAX_HEADERS:
        raise SipError(f"more than {MAX_HEADERS} header lines")
    names = _header_names
    for line in lines[1:]:
        first = line[:1]
        if first == " " or first == "\t":
            # RFC 3261 section 7.3.1: header folding continues the previous value.
            if not last:
                raise SipError("continuation line before any header")
            headers[last][-1] += " " + line.strip()
            continue
        raw, sep, value = line.partition(":")
        if not sep:
            raise SipError(f"header line without ':' {line[:40]!r}")
        name = names.get(raw)
        if name is None:
            name = raw.strip().lower()
            name = COMPACT.get(name, name)
            if len(names) < HEADER_NAME_CACHE:
                names[raw] = name
        last = name
        vals = headers.get(name)
        if vals is None:
            headers[name] = [value.strip()]
        else:
            vals.append(value.strip())
    clen = headers.get("content-length")
    if clen:
        text = clen[0].strip()
        if not text.isdigit():
            raise SipError(f"bad Content-Length {text[:20]!r}")
        # RFC 3261 section 18.3 tells a UA to discard a datagram shorter than its
        # Content-Length; a recorder keeps what it has (some UAs miscount by a few bytes).
        body = body[: int(text)]
    return SipMessage(method, status, reason, uri, headers, body)
