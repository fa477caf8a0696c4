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


def _utc(ts_ns: int) -> tuple[dt.datetime, int]:
    sec, ns = divmod(ts_ns, 1_000_000_000)
    sec = min(max(sec, 0), _MAX_SEC)
    return dt.datetime.fromtimestamp(sec, dt.UTC), ns


@functools.lru_cache(maxsize=SECOND_CACHE)
def _second(sec: int) -> str:
    return dt.datetime.fromtimestamp(min(max(sec, 0), _MAX_SEC), dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S")


def rfc3339(ts_ns: int) -> str:
    """RFC 3339 UTC with microseconds, e.g. 2016-11-26T14:52:59.666393Z."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    return f"{_second(sec)}.{ns // 1000:06d}Z"


def date_parts(ts_ns: int) -> tuple[str, str, str, str]:
    """(YYYY, MM, DD, YYYYMMDDTHHMMSS) of a capture time, UTC."""
    d, _ = _utc(ts_ns)
    return f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}", d.strftime("%Y%m%dT%H%M%S")
