"""Fuzzing the whole packet path (link layers, tunnels, reassembly, dedup, HEP, SIP, SDP,
RTP, RTCP, the Recorder, the writer) with mutated real captures.

Seed corpus: every capture in ../shared/pcaps and pcaps/, each packet as captured. Each
round takes one seed, mutates about a third of its packets (bit flips, byte overwrites,
truncation, insertion, a splice with another packet, a length field set to an extreme, a
timestamp leap), writes the result as a capture and imports it in this process exactly as
`calltap import` does. Every round checks:
- no unhandled exception (a crash is kept in WORK/crashes with its capture and traceback,
  and the run goes on);
- every call whose SIP packets all survived unmutated is still written (its Call-ID is in
  the index), compared with the import of the clean seed;
- no recording is longer than its capture's span (plus a second);
- peak memory stays under MEMORY_BOUND;
- nothing is written outside the round's output directory and WORK (the repository's
  `git status` and the working directory's listing are compared before and after).

A second mode corrupts every shared capture with `editcap -E 0.02` (random byte errors,
Wireshark's own tool) and imports each with the command line: exit 0 or 1, one-line
errors, never a traceback.

    .venv/bin/python bench/fuzz_bench.py --packets 10000000 [--seed 1] [--mutate 0.33]
                                         [--work DIR]
    .venv/bin/python bench/fuzz_bench.py --editcap [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from calltap.config import Config  # noqa: E402
from calltap.importer import Importer  # noqa: E402
from capture.decode import decode  # noqa: E402
from capture.pcapfile import open_capture  # noqa: E402
from capture.pcapwrite import pcap_header, pcap_record  # noqa: E402

SHARED = ROOT.parent / "shared" / "pcaps"
# The import's peak RSS must stay under this (the largest seed is a few MB; the bounds of
# the capture path's tables and buffers add up to far less).
MEMORY_BOUND = 2 << 30
# Share of a round's packets mutated.
MUTATE = 0.33
NS = 1_000_000_000

Packet = tuple[int, int, bytes]


def seeds() -> list[Path]:
    found = sorted(SHARED.glob("*.pcap*")) if SHARED.is_dir() else []
    return found + sorted((ROOT / "pcaps").glob("*.pcap"))


def load(path: Path) -> list[Packet]:
    try:
        return [(t, link, bytes(frame)) for t, link, frame in open_capture(str(path))]
    except Exception:  # noqa: BLE001 - a seed our reader refuses is no seed
        return []


def mutate(rng: random.Random, frame: bytes, others: list[Packet]) -> bytes:
    b = bytearray(frame)
    op = rng.randrange(7)
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    if op == 0:  # bit flips
        for _ in range(rng.randrange(1, 9)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # bytes overwritten
        for _ in range(rng.randrange(1, 5)):
            b[rng.randrange(len(b))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    elif op == 2:  # cut short
        del b[rng.randrange(len(b)):]
    elif op == 3:  # bytes inserted
        at = rng.randrange(len(b) + 1)
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
    elif op == 4:  # spliced with another packet
        other = rng.choice(others)[2]
        at = rng.randrange(len(b) + 1)
        b = b[:at] + bytearray(other[rng.randrange(len(other) + 1):])
    elif op == 5:  # a 16-bit field (lengths, ports, offsets) set to an extreme
        if len(b) >= 2:
            at = rng.randrange(len(b) - 1)
            b[at:at + 2] = struct.pack("!H", rng.choice((0, 1, 0xFFFF, 0x8000, len(b))))
    else:  # the payload's text mangled where it is SIP (a header line doubled or cut)
        text = bytes(b)
        at = text.find(b"\r\n", rng.randrange(len(text)))
        if at > 0:
            line_end = text.find(b"\r\n", at + 2)
            if line_end > 0:
                line = text[at:line_end]
                b = bytearray(text[:at] + (line * rng.randrange(0, 3)) + text[line_end:])
    return bytes(b)


def write(path: Path, packets: list[Packet]) -> None:
    link = packets[0][1] if packets else 1
    with open(path, "wb") as f:
        f.write(pcap_header(link, True))
        for t, lk, frame in packets:
            if lk == link:
                f.write(pcap_record(max(0, t), frame, True))


def import_into(pcap: Path, out: Path) -> list[dict[str, object]]:
    imp = Importer(Config(out=str(out), jobs=1, progress=False))
    imp.import_file(str(pcap))
    imp.finish()
    index = out / "index.jsonl"
    return [json.loads(x) for x in index.read_text().splitlines()] if index.exists() else []


def sip_packets(packets: list[Packet], call_ids: set[str]) -> dict[str, set[int]]:
    """For each Call-ID carried whole in single UDP datagrams, the packets that carry it.
    A call with SIP over TCP or in IP fragments is left out (empty set): its messages'
    other segments and fragments carry no Call-ID, so whether they survived is unknown."""
    found: dict[str, set[int]] = {c: set() for c in call_ids}
    whole: dict[str, bool] = dict.fromkeys(call_ids, True)
    keys = {c: [f"Call-ID: {c}".encode(), f"i: {c}".encode()] for c in call_ids}
    for k, (_t, link, frame) in enumerate(packets):
        if b"Call-ID" not in frame and b"\ni:" not in frame:
            continue
        for c, needles in keys.items():
            if any(n in frame for n in needles):
                found[c].add(k)
                d = decode(link, frame)
                if isinstance(d, int) or d[0] != 17 or not any(n in d[5] for n in needles):
                    whole[c] = False
    return {c: found[c] if whole[c] else set() for c in call_ids}


def span_ok(entries: list[dict[str, object]], out: Path, span_s: float) -> list[str]:
    bad = []
    for e in entries:
        s = json.loads((out / str(e["summary"])).read_text())
        rate = s.get("sample_rate") or 0
        if rate and s.get("audio_frames", 0) / rate > span_s + 1.0:
            bad.append(f"{e['call_id']}: {s['audio_frames'] / rate:.1f} s of audio from a "
                       f"{span_s:.1f} s capture")
    return bad


def git_status() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True,
                       text=True, check=False)
    return r.stdout


def fuzz(target: int, seed: int, work: Path, share: float = MUTATE) -> int:
    before = git_status()
    crashes = work / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    corpus = [(p, pk) for p in seeds() if (pk := load(p))]
    print(f"seed corpus: {len(corpus)} captures, {sum(len(pk) for _p, pk in corpus):,} "
          "packets", flush=True)
    clean: dict[Path, tuple[set[str], dict[str, set[int]]]] = {}
    fed = mutated = rounds = checked = crashed = 0
    problems: list[str] = []
    t0 = time.monotonic()
    rng = random.Random(seed)
    while fed < target:
        for path, packets in corpus:
            if fed >= target:
                break
            if path not in clean:  # the clean seed's calls and their SIP packets
                with tempfile.TemporaryDirectory(dir=work) as tmp:
                    write(Path(tmp) / "seed.pcap", packets)
                    ids = {str(e["call_id"]) for e in import_into(Path(tmp) / "seed.pcap",
                                                                   Path(tmp) / "out")}
                clean[path] = (ids, sip_packets(packets, ids))
            ids, carriers = clean[path]
            out_packets: list[Packet] = []
            hit: set[int] = set()
            for k, (t, link, frame) in enumerate(packets):
                if rng.random() < share:
                    hit.add(k)
                    if rng.random() < 0.02:  # the capture clock leaps
                        t += rng.choice((-1, 1)) * rng.randrange(1, 10**6) * NS
                    frame = mutate(rng, frame, packets)
                out_packets.append((t, link, frame))
            survivors = {c for c in ids if carriers[c] and not carriers[c] & hit}
            with tempfile.TemporaryDirectory(dir=work) as tmp:
                pcap = Path(tmp) / "fuzz.pcap"
                write(pcap, out_packets)
                try:
                    entries = import_into(pcap, Path(tmp) / "out")
                except Exception:  # noqa: BLE001 - a crash: kept, the run goes on
                    crashed += 1
                    dest = crashes / f"{path.name}-{rounds}"
                    dest.mkdir()
                    shutil.copy(pcap, dest / "fuzz.pcap")
                    (dest / "traceback.txt").write_text(traceback.format_exc())
                    print(f"CRASH on {path.name} round {rounds}: {dest}", flush=True)
                    entries = []
                else:
                    written = {str(e["call_id"]) for e in entries}
                    for c in sorted(survivors - written):
                        problems.append(f"{path.name} round {rounds}: call {c!r} lost though "
                                        "its signalling survived")
                        keep = work / "lost" / f"{path.name}-{rounds}"
                        keep.mkdir(parents=True, exist_ok=True)
                        shutil.copy(pcap, keep / "fuzz.pcap")
                    times = [t for t, _l, _f in out_packets]  # the leaps included
                    span = (max(times) - min(times)) / NS if times else 0.0
                    problems += span_ok(entries, Path(tmp) / "out", span)
                    checked += len(survivors)
            fed += len(packets)
            mutated += len(hit)
            rounds += 1
            if rounds % 20 == 0:
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                print(f"{fed:,} packets ({mutated:,} mutated), {rounds} rounds, "
                      f"{crashed} crashes, {len(problems)} problems, peak RSS "
                      f"{rss / 2**20:.0f} MiB, {time.monotonic() - t0:.0f} s", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stray = sorted(set(os.listdir(work)) - {"crashes", "lost"})
    after = git_status()
    print(f"\npackets through the path: {fed:,} ({mutated:,} mutated) in {rounds} rounds, "
          f"{time.monotonic() - t0:.0f} s")
    print(f"unhandled exceptions: {crashed}")
    print(f"calls whose signalling survived, checked written: {checked:,}; lost: "
          f"{sum('lost' in p for p in problems)}")
    print(f"recordings longer than their capture: {sum('s of audio' in p for p in problems)}")
    print(f"peak RSS: {rss / 2**20:.0f} MiB (bound {MEMORY_BOUND / 2**20:.0f} MiB)")
    print(f"files left outside the run's outputs: {stray or 'none'}; repository changed: "
          f"{'yes' if after != before else 'no'}")
    for p in problems[:30]:
        print("  " + p)
    ok = not crashed and not problems and rss < MEMORY_BOUND and not stray and after == before
    return 0 if ok else 1


def editcap_run(work: Path) -> int:
    """Every shared capture corrupted by editcap -E 0.02, imported by the command line."""
    if shutil.which("editcap") is None:
        sys.exit("fuzz_bench: editcap (Debian's wireshark-common) is not installed")
    bad = 0
    for path in seeds():
        damaged = work / f"{path.name}.damaged.pcapng"
        made = subprocess.run(["editcap", "-E", "0.02", str(path), str(damaged)],
                              capture_output=True, text=True, check=False)
        if made.returncode:
            print(f"skip {path.name}: editcap: {made.stderr.strip()[:200]}")
            continue
        r = subprocess.run([sys.executable, "-m", "calltap.cli", "import", str(damaged),
                            "--out", str(work / "out"), "--no-progress", "-j", "1"],
                           capture_output=True, text=True, cwd=work, check=False)
        errors = [x for x in r.stderr.splitlines() if "error" in x.lower()]
        if r.returncode not in (0, 1) or "Traceback" in r.stderr:
            bad += 1
            print(f"FAIL {path.name}: exit {r.returncode}: {r.stderr[-400:]}")
        else:
            print(f"ok   {path.name}: exit {r.returncode}, {len(errors)} error lines")
        damaged.unlink()
    print(f"\n{bad} of {len(seeds())} damaged captures failed")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutate", type=float, default=MUTATE,
                    help=f"share of each round's packets mutated ({MUTATE})")
    ap.add_argument("--work", default="", help="working directory (default: a temporary one)")
    ap.add_argument("--editcap", action="store_true", help="the editcap -E run instead")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="calltap-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    return editcap_run(work) if args.editcap else fuzz(args.packets, args.seed, work,
                                                       args.mutate)


if __name__ == "__main__":
    sys.exit(main())
