"""Import benchmark: 200 concurrent 60-second G.711 calls, against tshark on the same file.

Prints packets per second, peak memory (RSS of the import process) and the ratio of
calltap's import time to ``tshark -q -z rtp,streams`` on the same capture, both measured
in this run (absolute times on shared machines are noisy; the ratio is the figure).

    .venv/bin/python bench/import_bench.py [--calls 200] [--duration 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calltap.generate import GenOptions, generate


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB of the child, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.strip()[:500]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest of any child so far; run the import first.
    return wall, max(peak, before), r.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--keep", help="directory to keep the capture in (reused when present)")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="calltap-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pcap = work / f"bench-{args.calls}x{int(args.duration)}.pcap"
    if not pcap.exists():
        t0 = time.perf_counter()
        n = generate(str(pcap), GenOptions(calls=args.calls, duration=args.duration,
                                           loss=0.005, jitter_ms=4.0, seed=5))
        print(f"generated {n} packets ({pcap.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t0:.1f} s")
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    calltap = str(Path(sys.executable).parent / "calltap")
    t_imp, rss, stdout = timed([calltap, "import", str(pcap), "--out", str(out), "--no-progress"])
    packets = int(stdout.split(" packets read")[0].rsplit(" ", 1)[-1])
    t_tshark, _rss2, _ = timed(["tshark", "-q", "-n", "-r", str(pcap), "-z", "rtp,streams"])
    written = len((out / "index.jsonl").read_text().splitlines())
    print(f"calls written          {written}")
    print(f"packets                {packets}")
    print(f"calltap import         {t_imp:.1f} s, {packets / t_imp:,.0f} packets/s")
    print(f"peak memory (RSS)      {rss / 1024:.0f} MiB")
    print(f"tshark rtp,streams     {t_tshark:.1f} s")
    print(f"ratio calltap/tshark   {t_imp / t_tshark:.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    os.sync()


if __name__ == "__main__":
    main()
