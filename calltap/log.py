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
