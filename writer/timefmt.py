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
    if (text[4] + text[7] + text[10] + text[13] + text[16] == "--T::"
            and (digits := text[:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16]
                 + text[17:19]).isascii() and digits.isdigit()):
        # the fields where rfc3339 puts them: read without strptime, whose module alone
        # took 10 ms to load in every process; datetime checks the ranges as strptime does
        t = dt.datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]),
                        int(digits[8:10]), int(digits[10:12]), int(digits[12:]), tzinfo=dt.UTC)
    else:
        t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return _micros(t) // 1_000_000


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _micros(t: dt.datetime) -> int:
    """Microseconds since the epoch, exact (a float timestamp is not, before 1970)."""
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


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
    return _micros(t) * 1000


def date_parts(ts_ns: int) -> tuple[str, str, str, str]:
    """(YYYY, MM, DD, YYYYMMDDTHHMMSS) of a capture time, UTC."""
    return _date_parts(ts_ns // 1_000_000_000)


@functools.lru_cache(maxsize=SECOND_CACHE)
def _date_parts(sec: int) -> tuple[str, str, str, str]:
    d = _utc(sec)
    return f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}", d.strftime("%Y%m%dT%H%M%S")
