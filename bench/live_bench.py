"""Live capture benchmark: how many concurrent G.711 calls one capture process records with
no drop, and its CPU per packet; with ``--procs 1,2`` the same for one and for two capture
processes on the interface (``calltap capture --procs 2``, AF_PACKET fanout).

A capture of ``--calls`` concurrent calls (all in progress at once, ``--duration`` seconds
each) is replayed with tcpreplay into a veth pair whose far end lives in a network namespace
this script creates; ``calltap capture`` reads the near end (pinned to one core, tcpreplay
to the other), with its own redis-server. Each step replays the whole capture at a fixed,
higher packet rate (tcpreplay ``--pps``), so the rate is what the step says, every packet
of it: a G.711 call in both directions is 100 packets/s, so 100,000 packets/s stands for
1,000 concurrent calls. (tcpreplay's ``--multiplier`` follows the capture's timestamps and
falls behind them at these rates, by a third and more, so the rate it reaches is not the
one asked for.) A step must last well beyond what the kernel buffer (256 MiB, about 1.1
million packets) can hide of a deficit: the default capture, 500 calls of 120 s, is 6
million packets, a minute at 100,000 packets/s. After each step the capture's metrics give
kernel and application drops and its CPU time; then writers write the step's calls and the
index is counted. The result is the highest step with zero drops that the capture kept up
with: it had read the replay's last packet within ``MAX_DRAIN_S`` of the replay's end.
One capture process runs on the second core, tcpreplay on the first; two capture processes
get both cores (tcpreplay shares the first). Needs root.

    .venv/bin/python bench/live_bench.py [--calls 500] [--duration 120]
                                         [--rates 90000,100000,110000] [--procs 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = [sys.executable, "-m", "calltap.cli"]
HZ = os.sysconf("SC_CLK_TCK")
# tcpreplay's own start before its first packet (reading the file's first block), seconds.
REPLAY_START_S = 0.3
# A step counts as kept up with when the capture read its last packet at most this long
# after the replay ended (the metrics are polled every 50 ms).
MAX_DRAIN_S = 0.5
# A step's writer has written all there is once its index stops growing this long.
WRITER_IDLE_S = 20.0


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    out: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children still running (the fanout's captures)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / HZ
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_s(int(k)) for k in kids)


def backlog(port: int, procs: int, before: dict[str, float], packets: int) -> float:
    """Seconds after the replay ended until the capture had read every packet of it: the
    backlog the kernel buffer held. A capture that keeps up has next to none; one that
    does not can still end a minute's step without a drop, the buffer hiding the deficit."""
    t0, key = time.monotonic(), 'calltap_packets_total{kind="all"}'
    last, still = -1.0, t0
    while time.monotonic() - still < 2.0:
        got = all_metrics(port, procs).get(key, 0.0) - before.get(key, 0.0)
        if packets and got >= packets:
            return time.monotonic() - t0
        if got != last:
            last, still = got, time.monotonic()
        time.sleep(0.05)
    return still - t0


def all_metrics(port: int, procs: int) -> dict[str, float]:
    """Every capture process's metrics, summed (process i serves on port + 100 i)."""
    out: dict[str, float] = {}
    for i in range(procs):
        for k, v in metrics(port + 100 * i).items():
            out[k] = out.get(k, 0.0) + v
    return out


def drops(m: dict[str, float]) -> dict[str, float]:
    """Packets lost by the kernel or the interface, and packets or calls the capture had to
    give up for want of room (tables, queues): what "no drop" means here."""
    lost = {k: v for k, v in m.items() if k.startswith("calltap_drops_total") and (
        'reason="kernel"' in k or 'reason="interface"' in k or "table_full" in k
        or "limit" in k or "evicted" in k)}
    lost["redis_ops_dropped"] = m.get("calltap_redis_ops_dropped_total", 0.0)
    return lost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--rates", default="90000,100000,110000,120000",
                    help="packets per second of each step, in order")
    ap.add_argument("--procs", default="1", help="capture processes to measure, in order")
    ap.add_argument("--keep", help="directory to keep the generated capture in")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("live_bench: needs root (network namespace, veth, capture)")
    for tool in ("tcpreplay", "ip", "redis-server", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"live_bench: {tool} is not installed")
    work = Path(args.keep or tempfile.mkdtemp(prefix="calltap-live-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pcap = work / f"live-{args.calls}x{int(args.duration)}.pcap"
    stagger = min(0.25, args.duration / 10 / max(1, args.calls))
    if not pcap.exists():
        t0 = time.perf_counter()
        subprocess.run([*PY, "generate", str(pcap), "--calls", str(args.calls), "--duration",
                        str(args.duration), "--stagger", f"{stagger:.6f}", "--codecs", "PCMU",
                        "--seed", "8"], check=True, cwd=work)
        print(f"generated {pcap.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.0f} s")
    packets = int(subprocess.run(["capinfos", "-c", "-M", str(pcap)], capture_output=True,
                                 text=True, check=True).stdout.split()[-1]) \
        if shutil.which("capinfos") else 0
    results = {}
    for procs in [int(x) for x in args.procs.split(",")]:
        results[procs] = measure(args, work, pcap, packets, procs)
    for procs, best in results.items():
        if best is None:
            print(f"{procs} capture process(es): no step ran without drops")
        else:
            print(f"{procs} capture process(es): highest rate with no drop: "
                  f"{best['packets_per_s']:,} packets/s = "
                  f"{best['concurrent_calls']:,} concurrent G.711 calls, "
                  f"{best['cpu_us_per_packet']} us of capture CPU per packet")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path, pcap: Path, packets: int, procs: int
            ) -> dict[str, Any] | None:
    """Step the rate up with ``procs`` capture processes; the best step without drops."""
    pid = os.getpid()
    ns, near, far = f"ctb{pid}", f"ctb{pid % 10000}a", f"ctb{pid % 10000}b"
    sock = work / f"redis-{procs}.sock"
    redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock),
                              "--save", "", "--dir", str(work)], stdout=subprocess.DEVNULL)
    url = f"unix://{sock}"
    port = 19_500 + pid % 400
    cap = None
    rows: list[dict[str, Any]] = []
    try:
        for cmd in (["ip", "netns", "add", ns],
                    ["ip", "link", "add", near, "type", "veth", "peer", "name", far],
                    ["ip", "link", "set", far, "netns", ns], ["ip", "link", "set", near, "up"],
                    ["ip", "netns", "exec", ns, "ip", "link", "set", far, "up"]):
            subprocess.run(cmd, check=True, capture_output=True)
        while not sock.exists():
            time.sleep(0.02)
        cores = "1" if procs == 1 else "0-1"
        cap = subprocess.Popen(["taskset", "-c", cores, *PY, "capture", "--interface", near,
                                "--redis", url, "--spool", str(work / f"spool-{procs}"),
                                "--buffer-mb", "256", "--metrics-port", str(port),
                                "--procs", str(procs)], cwd=work,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, CALLTAP_INACTIVITY_TIMEOUT="5"))
        time.sleep(3.0 + procs)
        for step in [int(x) for x in args.rates.split(",")]:
            cpu0 = cpu_s(cap.pid)
            m0 = all_metrics(port, procs)
            t0 = time.perf_counter()
            # the capture read into memory first (--preload-pcap): tcpreplay, sharing a core
            # with a capture process when there are two, spends its CPU on sending only
            done = subprocess.run(["ip", "netns", "exec", ns, "taskset", "-c", "0",
                                   "tcpreplay", "--preload-pcap", "-i", far, "--pps",
                                   str(step), str(pcap)],
                                  check=True, capture_output=True, text=True)
            # tcpreplay's own count of the sending time ("... sent in 12.93 seconds"), not
            # the time it took to read the capture first
            sent = re.search(r"sent in ([0-9.]+) seconds", done.stdout)
            wall = float(sent.group(1)) if sent else (time.perf_counter() - t0
                                                      - REPLAY_START_S)
            drain = backlog(port, procs, m0, packets)
            time.sleep(7.0)  # the calls' inactivity timeout and linger: all handed over
            m1 = all_metrics(port, procs)
            cpu = cpu_s(cap.pid) - cpu0
            got = m1.get('calltap_packets_total{kind="all"}', 0) - m0.get(
                'calltap_packets_total{kind="all"}', 0)
            lost = {k: v - m0.get(k, 0.0) for k, v in drops(m1).items()}
            lost = {k: v for k, v in lost.items() if v}
            out = work / f"out-{procs}-{step}"
            shutil.rmtree(out, ignore_errors=True)  # a kept directory's earlier run
            writer = subprocess.Popen([*PY, "writer", "--redis", url, "--out", str(out)],
                                      cwd=work, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 600
            index = out / "index.jsonl"
            seen, still = -1, time.monotonic()
            while time.monotonic() < deadline:
                n = len(index.read_text().splitlines()) if index.exists() else 0
                if n >= args.calls:
                    break
                if n != seen:
                    seen, still = n, time.monotonic()
                elif time.monotonic() - still > WRITER_IDLE_S:  # calls lost: no more come
                    break
                time.sleep(0.5)
            writer.terminate()
            writer.wait(30)
            lines = [json.loads(x) for x in index.read_text().splitlines()] \
                if index.exists() else []
            written = len(lines)
            # every call of the capture ends with its BYE: one ended otherwise was cut
            cut = sum(1 for e in lines if e.get("end_reason") != "bye")
            # the rate tcpreplay reached, which a fixed --pps keeps to within a fraction
            pps = got / max(wall, 0.001)
            rows.append({"procs": procs, "asked_pps": step, "packets": int(got),
                         "expected": packets, "packets_per_s": round(pps),
                         "concurrent_calls": round(pps / 100),
                         "cpu_us_per_packet": round(cpu / max(got, 1) * 1e6, 2),
                         "replay_s": round(wall, 1), "drain_s": round(drain, 2),
                         "drops": lost, "calls_written": written,
                         "calls_cut": cut})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if cap is not None:
            cap.terminate()
            cap.wait(30)
        redis.terminate()
        redis.wait(10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", near], capture_output=True, check=False)
    clean = [r for r in rows if not r["drops"] and r["calls_written"] == args.calls
             and not r["calls_cut"] and r["drain_s"] <= MAX_DRAIN_S
             and r["packets"] >= 0.999 * (r["expected"] or r["packets"])]
    return max(clean, key=lambda r: r["packets_per_s"], default=None)


if __name__ == "__main__":
    main()
