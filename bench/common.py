"""What the bench scripts share: running calltap in a fresh interpreter that reports its
peak memory, and timing a command."""

from __future__ import annotations

import subprocess
import sys
import time

# Runs the calltap command line in a fresh interpreter and prints the peak RSS of it and of
# its largest child (children are counted once they have exited).
WRAPPER = """
import resource, sys
from calltap.cli import main
code = main(sys.argv[1:])
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"RSS {me} {kids}", file=sys.stderr)
sys.exit(code)
"""


def timed(cmd: list[str]) -> tuple[float, str, str]:
    """Wall seconds, stdout and stderr of a command; exits with its error when it fails."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return wall, r.stdout, r.stderr
