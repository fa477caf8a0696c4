"""Output paths and atomic file writes: a reader never sees half a file."""

from __future__ import annotations

import errno
import hashlib
import os
from collections import deque
from typing import Any, BinaryIO

import orjson

from writer.timefmt import date_parts

_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def json_line(obj: Any, sort_keys: bool = False) -> bytes:
    """``obj`` as one line of compact UTF-8 JSON ending in a newline. orjson: the standard
    encoder took 70 us for a short call's summary and 44 us for its view, orjson 6 and 4
    (and the same documents come back from either's output)."""
    option = _JSON | orjson.OPT_SORT_KEYS if sort_keys else _JSON
    try:
        return orjson.dumps(obj, option=option)
    except orjson.JSONEncodeError:
        # a key that is not a string (an int) is written as one, as json.dumps does; asked
        # for every time, that made each summary a third slower to encode
        return orjson.dumps(obj, option=option | orjson.OPT_NON_STR_KEYS)


def call_stem(call_id: str, start_ns: int) -> tuple[str, str]:
    """(relative directory YYYY/MM/DD, file stem) from start time and a hash of the Call-ID."""
    year, month, day, stamp = date_parts(start_ns)
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    micro = (start_ns // 1000) % 1_000_000
    return f"{year}/{month}/{day}", f"{stamp}.{micro:06d}Z-{digest}"


def tmp_name(path: str) -> str:
    """The temporary name a file is written under before its rename: the process id keeps
    two writers of the same call (a job claimed again while still being written) apart."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{os.getpid()}.part")


def remove_stale_parts(directory: str, stem: str) -> int:
    """Remove temporary files of ``stem`` left by writer processes that no longer run on
    this host (a writer killed mid-job; its job was claimed by another): how many went. A
    live writer's files are left alone."""
    gone = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if not (name.startswith(f".{stem}") and name.endswith(".part")):
            continue
        pid = name[:-5].rsplit(".", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # someone else's process: running
        try:
            os.unlink(os.path.join(directory, name))
            gone += 1
        except OSError:
            pass
    return gone


def sync_file(f: BinaryIO, durable: bool) -> None:
    """With ``durable``, what was written to ``f`` is on disk before it returns."""
    if durable:
        f.flush()
        os.fsync(f.fileno())


def sync_path(path: str) -> None:
    """fsync a file or directory by name: a directory's fsync makes the renames and
    creations in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_writeback(path: str) -> None:
    """Have the kernel begin writing the file to disk now, without waiting for it (its pages
    already clean leave the cache: nothing reads a recording back soon). What import syncs
    once at the end is then mostly on disk already. The file is advised again once
    WRITEBACK_LAG newer ones have been, when its pages are written and can go."""
    _advise(path)
    _written.append(path)
    if len(_written) > WRITEBACK_LAG:
        _advise(_written.popleft())


# Files advised again this many files later: by then (tens of milliseconds) their writeback
# is done, so their pages leave the cache, and the next recordings are written into memory
# just freed. Pages left idle may go back to a virtual machine's host, and on this project's
# test machines writing a recording into such pages cost more than encoding it.
WRITEBACK_LAG = 4
_written: deque[str] = deque()


def _advise(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # advice only: the sync at the end writes it all the same
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_filesystem(path: str) -> None:
    """Everything written to the file system holding ``path`` reaches the disk: one
    syncfs(2) at the end of an import instead of an fsync per file."""
    import ctypes

    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    except (AttributeError, OSError):
        os.sync()
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes | bytearray, durable: bool = True) -> bool:
    """Write ``data`` to ``path``, which appears only once complete: as an unnamed file
    (O_TMPFILE) linked under its name once written, or where that cannot be (another file
    system, or the name exists: a call written again) through a temporary name and a
    rename. Unnamed, a short call's small files took 3.5% less of its import's time.
    Returns whether ``path`` existed before (the file replaced another)."""
    existed = None
    if _unnamed_ok:
        existed = _write_unnamed(path, data, durable)
        if existed is False:
            return False
    tmp = tmp_name(path)
    # the file descriptor itself: a Python file object cost a third of writing a short
    # call's small file (its buffer, and an fstat for the buffer's size)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        _write_all(fd, data, durable)
    finally:
        os.close(fd)
    if existed is None:
        existed = os.path.exists(path)
    os.replace(tmp, path)
    return existed


_unnamed_ok = hasattr(os, "O_TMPFILE")
"""Unnamed files work here (false once one could not be made or linked)."""


def _write_unnamed(path: str, data: bytes | bytearray, durable: bool) -> bool | None:
    """``write_atomic`` by an unnamed file: False once written and linked under a new name;
    True, having written nothing under ``path``, when the name exists (a rename replaces
    it); None, having written nothing, when unnamed files cannot be made or linked here."""
    global _unnamed_ok
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC,
                     0o666)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOENT, errno.EACCES):
            raise  # what a named file would meet as well
        _unnamed_ok = False  # not on this file system
        return None
    try:
        _write_all(fd, data, durable)
        # linkat(AT_SYMLINK_FOLLOW) through /proc: the link Python makes with a dir fd given
        os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd)
        return False
    except FileExistsError:
        return True  # replaced by a rename
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
        _unnamed_ok = False  # no /proc to link through
        return None
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray, durable: bool) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if durable:
        os.fsync(fd)


def append_index(out_dir: str, entry: dict[str, Any], durable: bool = True) -> None:
    """Append one line to index.jsonl in a single write, after the call's files exist."""
    line = json_line(entry, sort_keys=True)
    path = os.path.join(out_dir, "index.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    if durable:
        sync_path(out_dir)  # a new index.jsonl, or a new day's directory, is an entry here
