"""Catalog benchmark: a catalog of synthetic calls (1,000,000 by default) searched over
HTTP through ``calltap serve``: by number substring, by a time range plus a MOS range, and
by CIDR. Reports p50 and p95 per kind of search (the target is a p95 under 200 ms), the
catalog's size on disk and the rate at which it takes in new calls.

    .venv/bin/python bench/catalog_bench.py [--calls 1000000] [--queries 40] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from calltap.catalog import SqliteCatalog  # noqa: E402

MONTH_S = 30 * 86400
START = 1_767_225_600  # 2026-01-01T00:00:00Z
STATUSES = ("completed",) * 8 + ("failed", "cancelled")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def synthetic(k: int, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """Call number ``k``: an index entry and the parts of a summary the catalog reads."""
    t = START + rng.random() * MONTH_S
    caller = f"+4930{rng.randrange(10**7):07d}"
    callee = f"+44207{rng.randrange(10**6):06d}"
    stem = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f".{k:06d}Z-{k:012x}"
    day = time.strftime("%Y/%m/%d", time.gmtime(t))
    dur = round(rng.expovariate(1 / 120), 3)
    status = rng.choice(STATUSES)
    mos = [round(rng.uniform(1.5, 4.5), 2), round(rng.uniform(1.5, 4.5), 2)] \
        if status == "completed" else [None, None]
    a = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    b = f"192.0.2.{rng.randrange(1, 255)}"
    entry = {"call_id": f"{k}-{rng.getrandbits(48):x}@bench", "audio": f"{day}/{stem}.wav",
             "audio_files": [f"{day}/{stem}.wav"], "metadata": f"{day}/{stem}.xml",
             "summary": f"{day}/{stem}.json", "caller": f"sip:{caller}@example.com",
             "callee": f"sip:{callee}@example.net", "start": _iso(t), "answer": _iso(t + 2),
             "end": _iso(t + dur), "duration": dur, "status": status, "end_reason": "bye",
             "final_code": 200, "codecs": [rng.choice(("PCMA/8000", "PCMU/8000"))],
             "dtmf": "", "early_media": False, "mos": mos,
             "packets": [int(dur * 50)] * 2, "lost": [rng.randrange(20), rng.randrange(20)],
             "group": None, "retention": None, "policy_rule": "default",
             "paused_seconds": 0, "view": f"{day}/{stem}.view.json", "sip_pcap": None}
    summary = {"call": {"caller_signalling": f"{a}:5060", "callee_signalling": f"{b}:5060",
                        "media": {}, "identities": {}, "headers": {}},
               "directions": [{"src": f"{a}:16000", "dst": f"{b}:20000"},
                              {"src": f"{b}:20000", "dst": f"{a}:16000"}]}
    return entry, summary


def build(out: Path, calls: int, batch: int = 5000) -> float:
    """Fill the catalog; returns calls taken in per second."""
    cat = SqliteCatalog.beside(str(out))
    rng = random.Random(7)
    t0 = time.perf_counter()
    for first in range(0, calls, batch):
        cat.add_many([synthetic(k, rng) for k in range(first, min(calls, first + batch))])
    rate = calls / (time.perf_counter() - t0)
    cat.db.execute("ANALYZE")
    cat.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cat.close()
    return rate


def timed_get(url: str) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body: dict[str, Any] = json.load(r)
    return time.perf_counter() - t, body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=40, help="per kind of search")
    ap.add_argument("--keep", type=Path, help="build (or reuse) the catalog here")
    ap.add_argument("--port", type=int, default=8791)
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="calltap-catalog-bench-"))
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    db = out / "catalog.sqlite"
    rate = None
    if not db.exists():
        rate = build(out, args.calls)
    size = sum(p.stat().st_size for p in out.glob("catalog.sqlite*"))
    server = subprocess.Popen([sys.executable, "-m", "calltap.cli", "serve", "--out", str(out),
                               "--listen", f"127.0.0.1:{args.port}"])
    base = f"http://127.0.0.1:{args.port}/api/calls?"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "limit=1", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        rng = random.Random(11)

        def number() -> dict[str, Any]:
            return {"party": f"{rng.randrange(10**5):05d}"}

        def period() -> dict[str, Any]:
            t = START + rng.random() * (MONTH_S - 6 * 3600)
            return {"from": _iso(t), "to": _iso(t + 6 * 3600), "mos_min": 2.0,
                    "mos_max": 3.2}

        def network() -> dict[str, Any]:
            return {"cidr": f"10.{rng.randrange(256)}.0.0/16"}

        kinds: dict[str, Callable[[], dict[str, Any]]] = {
            "number substring": number, "time range + MOS range": period, "CIDR": network}
        print(f"catalog                {args.calls:,} calls, {size / 2**20:.0f} MiB on disk"
              + (f", taken in at {rate:,.0f} calls/s" if rate else " (reused)"))
        for name, make in kinds.items():
            times = []
            totals = []
            for _ in range(args.queries):
                took, body = timed_get(base + urllib.parse.urlencode(make()))
                times.append(took * 1000)
                totals.append(body["total"])
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            print(f"{name:22} p50 {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms   "
                  f"(median {statistics.median(totals):,.0f} matches, 50 per page)")
    finally:
        server.terminate()
        server.wait(10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            os.sync()


if __name__ == "__main__":
    main()
