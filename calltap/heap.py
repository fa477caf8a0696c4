"""The C heap's tuning for processes that make and drop large numpy arrays per call.

glibc serves each allocation above its mmap threshold (128 KiB, rising to 32 MiB as
large blocks are freed) with a fresh mapping and unmaps it on free, so every call's
working arrays are faulted in page by page again: on the 200-call benchmark import that
was about 190,000 page faults and over a second of system time. Raising the threshold
and the trim threshold keeps freed blocks in the heap for the next call.
"""

from __future__ import annotations

import ctypes

# mallopt(3) parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks up to this size come from the heap: glibc's ceiling for the threshold on 64-bit
# (larger values are refused), above the arrays of a call of a few minutes.
HEAP_BLOCK_MAX = 32 << 20
# Free memory kept at the heap's top before it is returned to the system.
HEAP_KEEP = 512 << 20


def keep_freed_blocks() -> bool:
    """Apply the tuning to this process (and the processes it forks afterwards); False
    where the C library is not glibc."""
    try:
        # the process's own symbols, the C library's among them: finding libc by name
        # (ctypes.util.find_library) ran ldconfig, 24 ms of every import's start
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # One arena for every thread: a thread's own arena lives in 64 MiB heaps that are
    # unmapped as they empty, so import's index thread faulted its windows' pages in again
    # each window (34,000 of the benchmark import's 87,000 faults). Large blocks are few;
    # the shared lock costs nothing measurable.
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_MAX)
                and mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP)
                and mallopt(_M_ARENA_MAX, 1))
