"""Capture time (integer nanoseconds since the epoch) to RFC 3339 text."""

from __future__ import annotations

import datetime as dt
import functools

# Capture files carry whatever the capturing clock said; datetime covers years 1-9999.
_MAX_SEC = 253_402_300_799
# Seconds whose text is kept: a call's times fall in a few seconds, and calls are written
# roughly in time order, so a small cache serves nearly every conversion (strftime took
# 9 us, several times per call).
SECOND_CACHE = 4096


def _utc(sec: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(min(max(sec, 0), _MAX_SEC), dt.UTC)


@functools.lru_cache(maxsize=SECOND_CACHE)
def _second(sec: int) -> str:
    return _utc(sec).strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339(ts_ns: int) -> str:
    """RFC 3339 UTC with microseconds, e.g. 2016-11-26T14:52:59.666393Z."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    return f"{_second(sec)}.{ns // 1000:06d}Z"


@functools.lru_cache(maxsize=SECOND_CACHE)
def _seconds_of(text: str) -> int:
    t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return int(t.timestamp())


def parse_time(text: str | None) -> int | None:
    """Nanoseconds of an RFC 3339 time as ``rfc3339`` writes it (UTC, 'Z'); ValueError
    when it is not one."""
    if not text:
        return None
    if (len(text) == 27 and text[19] == "." and text[26] == "Z" and text.isascii()
            and text[20:26].isdigit()):
        # rfc3339's own form: the seconds from the cache, the fraction read as it is
        return (_seconds_of(text[:19]) * 1_000_000 + int(text[20:26])) * 1000
    t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return (int(t.timestamp()) * 1_000_000 + t.microsecond) * 1000


def date_parts(ts_ns: int) -> tuple[str, str, str, str]:
    """(YYYY, MM, DD, YYYYMMDDTHHMMSS) of a capture time, UTC."""
    return _date_parts(ts_ns // 1_000_000_000)


@functools.lru_cache(maxsize=SECOND_CACHE)
def _date_parts(sec: int) -> tuple[str, str, str, str]:
    d = _utc(sec)
    return f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}", d.strftime("%Y%m%dT%H%M%S")
