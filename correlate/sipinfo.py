"""DTMF carried in SIP INFO bodies (application/dtmf-relay, application/dtmf)."""

from __future__ import annotations

# RFC 4733 section 3.2: events 0-15 are the DTMF keys (16 is flash).
EVENT_NAMES = "0123456789*#ABCD"
# Digits kept per call; a call with more is hostile or a modem, and the rest are counted.
MAX_DIGITS = 1000


def info_digit(content_type: str, body: bytes) -> tuple[str, float] | None:
    """(digit, duration ms or 0) from a SIP INFO body, or None when it carries no DTMF."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace").strip()
    if ctype == "application/dtmf-relay":
        fields = {}
        for line in text.splitlines():
            key, _, val = line.partition("=")
            fields[key.strip().lower()] = val.strip()
        signal = fields.get("signal", "")
        if not signal:
            return None
        duration = fields.get("duration", "0")
        return signal[:1].upper(), float(duration) if duration.isdigit() else 0.0
    if ctype == "application/dtmf" and text:
        digit = text[:2].strip()
        if digit.isdigit() and int(digit) < len(EVENT_NAMES):
            return EVENT_NAMES[int(digit)], 0.0
        return digit[:1].upper(), 0.0
    return None
