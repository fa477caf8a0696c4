"""Capture memory per active call: the live capture process's state (calls, media table,
spool buffers, Redis queue) with 100, 1,000 and 5,000 calls in progress, and whether it
stays flat as the calls go on.

Each run is a fresh process: it generates N concurrent calls, feeds the packets of the
first seconds to ``LiveCapture`` (the capture process's own code, with a real redis-server
and spool) as a live source would, then measures the anonymous memory (RssAnon) once every
call is in progress, at two points in the calls' life, each at the fullest point of the
capture's quarter-second cycle (the spool buffers hold what they hold just before they are
written out). Capture time runs on from one capture fed to the next, as on an interface
(going back in time would fill the dedup window to its bound). The per-call figure is the
growth over a capture process that has recorded one call, divided by N.

    .venv/bin/python bench/memory_bench.py [--calls 100,1000,5000] [--duration 24]
                                           [--marks 8,20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import ctypes, gc, json, os, sys, time
sys.path.insert(0, sys.argv[1])
from calltap.config import Config
from calltap.live import FLUSH_S, LiveCapture
import capture.pcapfile
from capture.pcapfile import open_capture

# the bench's own file reader, not the capture's (which takes frames from the kernel): small
# reads, so its buffer is not counted as call state
capture.pcapfile.READ_CHUNK = 64 << 10

calls, duration, url, work = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
marks = [float(x) for x in sys.argv[6].split(",")]


def anon() -> int:
    # anonymous memory in use: after a collection, with freed heap handed back (glibc keeps
    # freed blocks otherwise, and they would count as the capture's)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


cap = LiveCapture(Config(), url, os.path.join(work, "spool"), "bench")
out = {"empty": anon(), "at": {}}
clock = [0]  # where capture time has got to: each capture replays after the one before


def replay(pcap, marks):
    # fed as the live loop does: reads of up to 2,048 packets, the spool written out and
    # the changed calls saved every quarter second; measured at each mark
    start = None
    flushed = 0
    batch = []
    pending = list(marks)
    shift = None
    for ts, link, frame in open_capture(pcap):
        if shift is None:  # time runs on, as on a live interface
            shift = max(0, clock[0] + 10**9 - ts)
        ts += shift
        clock[0] = ts
        start = start or ts
        batch.append((ts, link, frame))
        if len(batch) == 2048:
            cap.recorder.feed(batch)
            cap._events()
            batch = []
            t = (ts - start) / 1e9
            if ts - flushed >= FLUSH_S * 1e9:  # what the capture loop does this often
                if pending and t >= pending[0]:
                    # measured at the fullest point of the cycle: just before the spool
                    # buffers are written out, with what the loop holds by then; the Redis
                    # queue sent, as the capture's sender thread keeps it
                    cap.link.flush()
                    live = len(cap.recorder.tracker.calls)
                    out["at"][pending.pop(0)] = {"anon": anon(), "calls": live}
                flushed = ts
                cap.spool.flush_all()
                cap.save_changed()
                cap.link.flush()
            if marks and not pending:
                return
    cap.recorder.feed(batch)
    cap.recorder.finish()
    cap._events()
    cap.spool.flush_all()
    cap.save_changed()
    cap.link.flush()
    cap.recorder.stopping = False


# warmed up: one call recorded start to end first, so what any first call loads once
# (modules, parsers' caches, the Redis client's buffers, a full read) is in the fixed base
replay(os.path.join(work, "warm-25s.pcap"), [])
out["base"] = anon()
if calls:
    replay(os.path.join(work, "calls.pcap"), marks)
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="100,1000,5000")
    ap.add_argument("--duration", type=float, default=24.0)
    ap.add_argument("--marks", default="8,20", help="seconds into the capture to measure at")
    ap.add_argument("--keep", help="directory to keep the generated captures in, and reuse")
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("memory_bench: redis-server is not installed")
    results = []
    for n in [0, *(int(x) for x in args.calls.split(","))]:
        work = Path(tempfile.mkdtemp(prefix="calltap-mem-bench-"))
        sock = work / "redis.sock"
        redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock),
                                  "--save", "", "--dir", str(work)], stdout=subprocess.DEVNULL)
        try:
            while not sock.exists():
                time.sleep(0.02)
            keep = Path(args.keep) if args.keep else work
            keep.mkdir(parents=True, exist_ok=True)
            # the warm-up call is long enough (2,500 packets) for full reads of 2,048
            # packets: the loop's read batch is a fixed cost, not a call's
            runs = [("warm-25s.pcap", ["--calls", "1", "--duration", "25", "--seed", "4"])]
            if n:  # generated apart: the generator's memory is not the capture's
                runs.append((f"calls-{n}x{args.duration:g}.pcap", [
                    "--calls", str(n), "--duration", str(args.duration),
                    "--stagger", f"{min(0.25, 2.0 / n):.6f}", "--seed", "3"]))
            for name, opts in runs:
                if not (keep / name).exists():
                    subprocess.run([sys.executable, "-m", "calltap.cli", "generate",
                                    str(keep / name), *opts, "--codecs", "PCMU"],
                                   check=True, capture_output=True, cwd=work)
                if keep != work:
                    (work / name).symlink_to(keep / name)
            if n:
                (work / "calls.pcap").symlink_to(work / runs[1][0])
            r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(n),
                                str(args.duration), f"unix://{sock}", str(work), args.marks],
                               capture_output=True, text=True, check=True)
            results.append((n, json.loads(r.stdout.strip().splitlines()[-1])))
        finally:
            redis.terminate()
            redis.wait(10)
            shutil.rmtree(work, ignore_errors=True)
    empty = results[0][1]["base"]
    print(f"capture process, empty: {results[0][1]['empty'] / 2**20:.1f} MiB anonymous; "
          f"after one call (the fixed base): {empty / 2**20:.1f} MiB")
    # the slope from one size to the next, at each point in time, needs no base at all
    sized = [(n, got["at"]) for n, got in results[1:]]
    for (n1, a1), (n2, a2) in zip(sized, sized[1:], strict=False):
        for mark in a1:
            if mark in a2:
                slope = (a2[mark]["anon"] - a1[mark]["anon"]) / max(
                    1, a2[mark]["calls"] - a1[mark]["calls"])
                print(f"per call from {n1} to {n2} calls at {float(mark):4.0f} s: "
                      f"{slope / 1000:6.1f} KB")
    for n, got in results[1:]:
        for mark, m in sorted(got["at"].items(), key=lambda x: float(x[0])):
            per = (m["anon"] - empty) / max(1, m["calls"])
            print(f"{n:5} calls, {m['calls']:5} in progress at {float(mark):4.0f} s: "
                  f"{m['anon'] / 2**20:7.1f} MiB anonymous, {per / 1000:6.1f} KB per call")


if __name__ == "__main__":
    main()
