"""What the bench scripts share: running calltap in a fresh interpreter that reports its
peak memory, and timing a command."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs the calltap command line in a fresh interpreter and prints the peak RSS of it and of
# its largest child (children are counted once they have exited).
WRAPPER = """
import os, resource, sys, threading, time
from calltap.cli import main

peak = {"anon": 0, "file": 0, "kids_anon": 0}


def status(pid):
    got = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "RssFile"):
                    got[k] = int(v.split()[0])
    except OSError:
        pass
    return got


def children():
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            out += open(f"/proc/self/task/{tid}/children").read().split()
        except OSError:
            pass
    return out


def sample():
    while True:
        me = status("self")
        peak["anon"] = max(peak["anon"], me.get("RssAnon", 0))
        peak["file"] = max(peak["file"], me.get("RssFile", 0))
        for pid in children():
            peak["kids_anon"] = max(peak["kids_anon"], status(pid).get("RssAnon", 0))
        time.sleep(0.05)


threading.Thread(target=sample, daemon=True).start()
code = main(sys.argv[1:])
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"RSS {me} {kids}", file=sys.stderr)
print(f"PEAKS {peak['anon']} {peak['file']} {peak['kids_anon']}", file=sys.stderr)
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


def compiled() -> None:
    """Compile calltap's modules, as an installed calltap has them: where the environment
    sets PYTHONDONTWRITEBYTECODE, every timed run would otherwise compile every module it
    imports (0.2 s of each start on the project's machines)."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("calltap", "capture", "correlate", "writer"):
        compileall.compile_dir(str(root / package), quiet=1)


def bench_capture(ap: argparse.ArgumentParser) -> tuple[argparse.Namespace, Path, Path]:
    """Parse the common options (--calls, --duration, --keep) and the script's own, and
    generate the benchmark capture (N concurrent G.711 calls, 0.5% loss, 4 ms jitter)
    unless --keep already holds it: (arguments, work directory, capture)."""
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--keep", help="directory to keep the capture in (reused when present)")
    args = ap.parse_args()
    compiled()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="calltap-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pcap = work / f"bench-{args.calls}x{int(args.duration)}.pcap"
    if not pcap.exists():
        # In a child: a child's peak RSS counts what it inherited before exec, so the
        # generator's memory must never live in a process that measures itself.
        t0 = time.perf_counter()
        calltap = str(Path(sys.executable).parent / "calltap")
        subprocess.run([calltap, "generate", str(pcap), "--calls", str(args.calls),
                        "--duration", str(args.duration), "--loss", "0.005",
                        "--jitter-ms", "4", "--seed", "5"], check=True)
        print(f"generated {pcap.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")
    return args, work, pcap
