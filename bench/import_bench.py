"""Import benchmark: 200 concurrent 60-second G.711 calls, against tshark on the same file.

Prints packets per second, peak memory (RSS of the import process) and the ratio of
calltap's import time to ``tshark -q -z rtp,streams`` on the same capture, both measured
in this run (absolute times on shared machines are noisy; the ratio is the figure).

    .venv/bin/python bench/import_bench.py [--calls 200] [--duration 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WRAPPER, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--keep", help="directory to keep the capture in (reused when present)")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="calltap-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pcap = work / f"bench-{args.calls}x{int(args.duration)}.pcap"
    calltap = str(Path(sys.executable).parent / "calltap")
    if not pcap.exists():
        # In a child: a child's peak RSS counts what it inherited before exec, so the
        # generator's memory must never live in this process.
        t0 = time.perf_counter()
        subprocess.run([calltap, "generate", str(pcap), "--calls", str(args.calls),
                        "--duration", str(args.duration), "--loss", "0.005",
                        "--jitter-ms", "4", "--seed", "5"], check=True)
        print(f"generated {pcap.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")
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
