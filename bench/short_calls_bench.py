"""Short-call import benchmark: ``sipp-branch-scenario.pcapng`` (1,259 short SIP-only calls,
from ../shared) imported by the core before the Recorder rewrite (the ``import-v1`` tag, as
bench/compare_import.py extracts it) and by the working tree, alternately ``--rounds``
times, each run into a directory of its own (see import_bench.py on deleting files just
before a run). Prints both medians and old/new (the speed-up).

The design review measured this import at 13 s, 7.8 s of them in 2,518 fsyncs of 3.1 ms
each. ``--fsync-delay-us 3100`` makes every fsync, fdatasync and syncfs of both runs take
that much longer (a small LD_PRELOAD library, compiled with cc into the work directory), so
the two cores can be compared on a disk like that one: a measurement of software against an
emulated device latency, to be reported as such.

    .venv/bin/python bench/short_calls_bench.py [--rounds 5] [--fsync-delay-us N]
                                                [--jobs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compiled  # noqa: E402
from compare_import import DEFAULT_REV, RUN, SHARED_PCAPS, old_tree  # noqa: E402

CAPTURE = SHARED_PCAPS / "sipp-branch-scenario.pcapng"
FSYNC_DELAY_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
static void delay(void) {
    const char *e = getenv("FSYNC_DELAY_US");
    long us = e ? atol(e) : 0;
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}
#define WRAP(name) int name(int fd) { \
    static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, #name); \
    delay(); return real(fd); }
WRAP(fsync)
WRAP(fdatasync)
WRAP(syncfs)
"""


def fsync_delay_library(work: Path) -> Path:
    """The LD_PRELOAD library that lengthens every fsync, compiled into ``work``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("short_calls_bench: --fsync-delay-us needs a C compiler (cc)")
    src, lib = work / "fsync_delay.c", work / "fsync_delay.so"
    src.write_text(FSYNC_DELAY_C)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"],
                   check=True)
    return lib


def run(tree: Path | None, out: Path, jobs: int, env: dict[str, str]
        ) -> tuple[float, float, float]:
    """Wall seconds, user and system CPU seconds (the import and its writers) of one
    import."""
    run_env = dict(env)
    if tree is not None:
        run_env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, "-c", RUN, "import", str(CAPTURE), "--out", str(out),
           "--no-progress", "--jobs", str(jobs)]
    before = os.times()
    t0 = time.perf_counter()
    # cwd outside the repository: with `python -c`, the working directory comes first on
    # sys.path, so the repository's packages would shadow the old tree's
    r = subprocess.run(cmd, capture_output=True, env=run_env, cwd=out.parent, check=False)
    wall = time.perf_counter() - t0
    after = os.times()
    if r.returncode not in (0, 1):
        sys.exit(f"short_calls_bench: import failed ({r.returncode}): "
                 f"{r.stderr.decode(errors='replace')[-500:]}")
    return (wall, after.children_user - before.children_user,
            after.children_system - before.children_system)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fsync-delay-us", type=int, default=0)
    ap.add_argument("--rev", default=DEFAULT_REV)
    ap.add_argument("--keep", help="directory for the old tree and the outputs (kept)")
    args = ap.parse_args()
    if not CAPTURE.exists():
        sys.exit(f"short_calls_bench: {CAPTURE} is absent (it comes with ../shared)")
    compiled()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="calltap-short-"))
    work.mkdir(parents=True, exist_ok=True)
    tree = old_tree(args.rev, work)
    import compileall

    compileall.compile_dir(str(tree), quiet=1)
    env = dict(os.environ)
    if args.fsync_delay_us:
        env["LD_PRELOAD"] = str(fsync_delay_library(work))
        env["FSYNC_DELAY_US"] = str(args.fsync_delay_us)
    runs = work / f"runs-{time.strftime('%Y%m%dT%H%M%S')}"
    runs.mkdir()
    times: dict[str, list[tuple[float, float, float]]] = {"old": [], "new": []}
    try:
        for i in range(args.rounds):
            for side, t in (("old", tree), ("new", None)):
                times[side].append(run(t, runs / f"{i}-{side}", args.jobs, env))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    med = {s: statistics.median(w for w, _, _ in v) for s, v in times.items()}
    user = {s: statistics.median(u for _, u, _ in v) for s, v in times.items()}
    system = {s: statistics.median(k for _, _, k in v) for s, v in times.items()}
    delay = f", every fsync {args.fsync_delay_us} us longer" if args.fsync_delay_us else ""
    print(f"{CAPTURE.name}, --jobs {args.jobs}{delay}")
    for s in ("old", "new"):
        walls = ", ".join(f"{w:.2f}" for w, _, _ in times[s])
        print(f"{s} ({args.rev if s == 'old' else 'working tree'}): median {med[s]:.2f} s "
              f"of [{walls}], CPU {user[s]:.2f} s user + {system[s]:.2f} s system")
    print(f"speed-up old/new       {med['old'] / med['new']:.2f}x")


if __name__ == "__main__":
    main()
