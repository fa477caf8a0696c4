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
