"""Import benchmark: 200 concurrent 60-second G.711 calls, against tshark on the same file.

calltap import and ``tshark -q -z rtp,streams`` run alternately ``--rounds`` times on the
same capture in this run; the medians and their ratio are printed (absolute times on shared
machines are noisy; the ratio is the figure). Memory is reported as peaks of anonymous
memory (what the import allocates) and of file-backed pages (the memory-mapped capture),
for the import process and its largest writer process. ``--profile`` also prints where the
import process spends its time.

    .venv/bin/python bench/import_bench.py [--calls 200] [--duration 60] [--rounds 3]
                                           [--keep DIR] [--profile]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WRAPPER, bench_capture, timed  # noqa: E402

# Each round writes into a directory of its own, and all are removed at the end, never
# between rounds: on ext4 without a journal, creating a file skips, one by one, every inode
# of its group freed in the last 60 s (360 s while the inode's table block is unwritten),
# so deleting one round's 1,000 files just before the next cost that import up to 1.4
# CPU-seconds of file creation that no import into a fresh directory pays. A stopped run's
# outputs are removed first, and the rounds wait this long after it.
STALE_WAIT_S = 60


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args, work, pcap = bench_capture(ap)
    stale = sorted(work.glob("out*"))
    for old in stale:  # a run that was stopped: its output goes now, a minute before ours
        shutil.rmtree(old, ignore_errors=True)
    if stale:
        time.sleep(STALE_WAIT_S)
    ours: list[float] = []
    theirs: list[float] = []
    peaks = [0, 0, 0]
    packets = written = 0
    for n in range(args.rounds):
        out = work / f"out-{n}"
        t_imp, stdout, stderr = timed([sys.executable, "-c", WRAPPER, "import", str(pcap),
                                       "--out", str(out), "--no-progress"])
        ours.append(t_imp)
        got = [int(x) for x in stderr.rsplit("PEAKS ", 1)[1].split()[:3]]
        peaks = [max(a, b) for a, b in zip(peaks, got, strict=True)]
        packets = int(stdout.split(" packets read")[0].rsplit(" ", 1)[-1])
        written = len((out / "index.jsonl").read_text().splitlines())
        t_tshark, _out, _err = timed(["tshark", "-q", "-n", "-r", str(pcap), "-z",
                                      "rtp,streams"])
        theirs.append(t_tshark)
    mine, peer = statistics.median(ours), statistics.median(theirs)
    size = pcap.stat().st_size / 2**20
    print(f"capture                {size:.0f} MiB, {packets} packets, {written} calls written")
    print(f"calltap import         median {mine:.2f} s of {[round(x, 2) for x in ours]}, "
          f"{packets / mine:,.0f} packets/s")
    print(f"tshark rtp,streams     median {peer:.2f} s of {[round(x, 2) for x in theirs]}")
    print(f"ratio calltap/tshark   {mine / peer:.2f}")
    print(f"peak memory            import process {peaks[0] / 1024:.0f} MiB anonymous + "
          f"{peaks[1] / 1024:.0f} MiB of mapped capture; largest writer "
          f"{peaks[2] / 1024:.0f} MiB anonymous")
    if args.profile:
        out = work / "out-profile"
        code = ("import cProfile, pstats, sys\nfrom calltap.cli import main\n"
                f"cProfile.run('main(sys.argv[1:])', {str(work / 'import.prof')!r})\n"
                f"pstats.Stats({str(work / 'import.prof')!r}).sort_stats('tottime')"
                ".print_stats(15)")
        r = subprocess.run([sys.executable, "-c", code, "import", str(pcap), "--out",
                            str(out), "--no-progress"], capture_output=True, text=True,
                           check=False)
        print(r.stdout[r.stdout.find("ncalls") - 200:] if "ncalls" in r.stdout else r.stderr)
    for done in work.glob("out*"):
        shutil.rmtree(done, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
