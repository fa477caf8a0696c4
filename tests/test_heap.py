"""The heap tuning keeps freed large blocks for the next allocations instead of mapping
and faulting in fresh pages each time (checked in child processes, so this one's heap is
left as it was)."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import resource
import numpy as np
from calltap.heap import keep_freed_blocks

if {tuned}:
    assert keep_freed_blocks()

def one_call() -> None:
    # working arrays of growing sizes, as a writer makes for one call
    for mb in (1, 3, 6, 12, 20, 30):
        a = np.ones(mb << 20, np.uint8)
        b = np.ones(mb << 19, np.uint8)
        del a, b

one_call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    one_call()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(tuned: bool) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD.format(tuned=tuned)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_freed_blocks_are_reused_once_tuned() -> None:
    assert _faults(tuned=False) > 1000  # glibc's default gives the pages back and refaults
    assert _faults(tuned=True) < 50




THREAD_CHILD = """
import ctypes, resource, tempfile, threading
import calltap.heap as heap  # first, as in calltap's processes (numpy after calltap)
import numpy as np

libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
assert heap.keep_freed_blocks()

def window():
    # a window's columns made on a thread and dropped on the main one, as import's index
    # thread and recorder do
    out = []
    t = threading.Thread(target=lambda: out.extend(np.ones(3 << 20, np.int64)
                                                   for _ in range(4)))
    t.start()
    t.join()
    return out

window()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    window()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
fd, path = tempfile.mkstemp()
report = libc.fdopen(fd, b"w")
libc.malloc_info(0, ctypes.c_void_p(report))  # malloc_info(3): one <heap> per arena
libc.fclose(ctypes.c_void_p(report))
print(open(path).read().count("<heap nr="), faults)
"""


def test_a_threads_blocks_come_from_the_one_kept_heap() -> None:
    # A thread would otherwise get an arena of its own, whose 64 MiB heaps are unmapped as
    # they empty: import's index thread faulted each window's pages in again.
    out = subprocess.run([sys.executable, "-c", THREAD_CHILD], capture_output=True,
                         text=True, check=True)
    arenas, faults = (int(x) for x in out.stdout.split())
    assert arenas == 1
    assert faults < 50  # the windows' blocks kept for the next windows
