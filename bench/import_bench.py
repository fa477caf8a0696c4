"""Import benchmark: 200 concurrent 60-second G.711 calls, against tshark on the same file.

Prints packets per second, peak memory (RSS of the import process) and the ratio of
calltap's import time to ``tshark -q -z rtp,streams`` on the same capture, both measured
in this run (absolute times on shared machines are noisy; the ratio is the figure).

    .venv/bin/python bench/import_bench.py [--calls 200] [--duration 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WRAPPER, bench_capture, timed  # noqa: E402


def main() -> None:
    args, work, pcap = bench_capture(argparse.ArgumentParser())
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    t_imp, stdout, stderr = timed([sys.executable, "-c", WRAPPER, "import", str(pcap),
                                   "--out", str(out), "--no-progress"])
    rss_main, rss_writer = (int(x) for x in stderr.rsplit("RSS ", 1)[1].split())
    packets = int(stdout.split(" packets read")[0].rsplit(" ", 1)[-1])
    t_tshark, _out, _err = timed(["tshark", "-q", "-n", "-r", str(pcap), "-z", "rtp,streams"])
    written = len((out / "index.jsonl").read_text().splitlines())
    print(f"calls written          {written}")
    print(f"packets                {packets}")
    print(f"calltap import         {t_imp:.1f} s, {packets / t_imp:,.0f} packets/s")
    print(f"peak memory (RSS)      {rss_main / 1024:.0f} MiB importer, "
          f"{rss_writer / 1024:.0f} MiB largest writer process")
    print(f"tshark rtp,streams     {t_tshark:.1f} s")
    print(f"ratio calltap/tshark   {t_imp / t_tshark:.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
