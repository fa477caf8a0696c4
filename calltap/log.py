"""Structured logs of the live processes: one JSON object per line on stderr."""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def log(component: str, msg: str, level: str = "info", **fields: Any) -> None:
    """Write one log line: time (UTC), level, component, message and any fields."""
    rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level,
           "component": component, "msg": msg, **fields}
    sys.stderr.write(json.dumps(rec, default=str) + "\n")
    sys.stderr.flush()


def disk_low(component: str, path: str, minimum: int, was: bool, consequence: str) -> bool:
    """Whether the file system of ``path`` has less than ``minimum`` bytes free; logs the
    change when that differs from ``was``."""
    import os

    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    low = free < minimum
    if low != was:
        log(component, f"disk nearly full at {path}: {consequence}" if low
            else f"disk has room again at {path}", "error" if low else "info", free_bytes=free)
    return low
