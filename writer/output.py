"""Output paths and atomic file writes: a reader never sees half a file."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from writer.timefmt import date_parts


def call_stem(call_id: str, start_ns: int) -> tuple[str, str]:
    """(relative directory YYYY/MM/DD, file stem) from start time and a hash of the Call-ID."""
    year, month, day, stamp = date_parts(start_ns)
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    micro = (start_ns // 1000) % 1_000_000
    return f"{year}/{month}/{day}", f"{stamp}.{micro:06d}Z-{digest}"


def tmp_name(path: str) -> str:
    """The temporary name a file is written under before its rename."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.part")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename."""
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_index(out_dir: str, entry: dict[str, Any]) -> None:
    """Append one line to index.jsonl in a single write, after the call's files exist."""
    line = (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    path = os.path.join(out_dir, "index.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
