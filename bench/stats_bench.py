"""`calltap stats` against `tshark -q -z rtp,streams` on the import benchmark's capture
(200 concurrent 60-second G.711 calls). Both run alternately ``--rounds`` times in this run;
the medians and their ratio are printed (absolute times on shared machines are noisy; the
ratio is the figure), with calltap's peak RSS and a check that both saw the same streams.

    .venv/bin/python bench/stats_bench.py [--calls 200] [--duration 60] [--rounds 3]
                                          [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WRAPPER, bench_capture, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args, work, pcap = bench_capture(ap)
    ours, theirs, rss = [], [], 0
    out = ""
    tshark_out = ""
    for _ in range(args.rounds):
        t, out, err = timed([sys.executable, "-c", WRAPPER, "stats", "--json", str(pcap)])
        ours.append(t)
        rss = max(rss, *(int(x) for x in err.rsplit("RSS ", 1)[1].split()))
        t, tshark_out, _err = timed(["tshark", "-q", "-n", "-r", str(pcap), "-z",
                                     "rtp,streams"])
        theirs.append(t)
    (report,) = json.loads(out)
    streams = [s for c in report["calls"] for s in c["streams"]]
    tshark_streams = sum(1 for line in tshark_out.splitlines() if " 0x" in line)
    packets = sum(s["received"] for s in streams)
    mine, peer = statistics.median(ours), statistics.median(theirs)
    print(f"calls / streams        {len(report['calls'])} / {len(streams)} "
          f"(tshark: {tshark_streams} streams)")
    print(f"RTP packets counted    {packets}")
    print(f"calltap stats          {mine:.2f} s median of {args.rounds} "
          f"({', '.join(f'{t:.2f}' for t in ours)})")
    print(f"tshark rtp,streams     {peer:.2f} s median ({', '.join(f'{t:.2f}' for t in theirs)})")
    print(f"peak memory (RSS)      {rss / 1024:.0f} MiB (largest of calltap's processes)")
    print(f"ratio calltap/tshark   {mine / peer:.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
