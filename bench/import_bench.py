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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WRAPPER, bench_capture, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args, work, pcap = bench_capture(ap)
    out = work / "out"
    ours: list[float] = []
    theirs: list[float] = []
    peaks = [0, 0, 0]
    packets = written = 0
    for _ in range(args.rounds):
        shutil.rmtree(out, ignore_errors=True)
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
        shutil.rmtree(out, ignore_errors=True)
        code = ("import cProfile, pstats, sys\nfrom calltap.cli import main\n"
                f"cProfile.run('main(sys.argv[1:])', {str(work / 'import.prof')!r})\n"
                f"pstats.Stats({str(work / 'import.prof')!r}).sort_stats('tottime')"
                ".print_stats(15)")
        r = subprocess.run([sys.executable, "-c", code, "import", str(pcap), "--out",
                            str(out), "--no-progress"], capture_output=True, text=True,
                           check=False)
        print(r.stdout[r.stdout.find("ncalls") - 200:] if "ncalls" in r.stdout else r.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
