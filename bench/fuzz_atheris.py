"""Coverage-guided fuzzing (atheris, libFuzzer) of the whole packet path: link layers,
tunnels, IP reassembly, TCP SIP, dedup, HEP, SIP, SDP, the dialog tracker, media routing,
the Recorder's timers, then the writer (RTP, RTCP, codecs, statistics, metadata) for every
call the input made.

An input is a run of packets, each ``link (u8, an index into LINKS) | time step (u32, us)
| length (u16) | frame``; a cut-off last packet is taken as far as it goes. The seed corpus
is made from every capture in ../shared/pcaps and pcaps/: windows of up to WINDOW packets
starting at each SIP INVITE (so the fuzzer starts from real calls), written once into
WORK/corpus. libFuzzer then mutates them guided by the coverage of our modules (the
imports are instrumented). Any exception is a finding: libFuzzer keeps the input in
WORK/crashes/ and stops. Replay it with ``--replay FILE``, make it a regression test (its
packets as a capture, imported in tests/test_e2e_fuzz.py), fix, and run again.

    .venv/bin/python bench/fuzz_atheris.py [--seconds 600] [--work DIR] [--jobs N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import atheris  # type: ignore[import-untyped]  # noqa: E402

# Modules atheris 2.3's bytecode instrumentation breaks on Python 3.11 (the instrumented
# code segfaults or computes wrong values; the same inputs run clean without it): run, not
# coverage-guided.
UNINSTRUMENTED = ["correlate.dialog", "writer.view"]
# A replay (--replay FILE) runs the code as it is, without instrumentation.
REPLAY = "--replay" in sys.argv
with (contextlib.nullcontext() if REPLAY else
      atheris.instrument_imports(include=["capture", "correlate", "writer"],
                                 exclude=UNINSTRUMENTED)):
    from calltap.config import Config
    from calltap.importer import settings_from
    from capture.pcapfile import open_capture
    from correlate.events import CallEnded
    from correlate.policy import Policy
    from correlate.recorder import Recorder
    from writer.columns import MediaColumns
    from writer.job import Media, write_call
    from writer.options import WriteOptions

SHARED = ROOT.parent / "shared" / "pcaps"
# Link types an input can name (Ethernet, raw IP, Linux SLL, SLL2, BSD loopback).
LINKS = (1, 101, 113, 276, 0)
HEAD = struct.Struct("<BIH")
# Packets per seed window and per input: enough for a call's set-up, media and BYE.
WINDOW = 400
MAX_PACKETS = 2000
NS = 1_000_000_000


def encode(packets: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray()
    last = packets[0][0] if packets else 0
    for t, link, frame in packets:
        step = max(0, min(t - last, 0xFFFFFFFF * 1000)) // 1000
        last = t
        k = LINKS.index(link) if link in LINKS else 0
        out += HEAD.pack(k, step, min(len(frame), 0xFFFF)) + frame[:0xFFFF]
    return bytes(out)


def decode_input(data: bytes) -> list[tuple[int, int, bytes]]:
    packets: list[tuple[int, int, bytes]] = []
    pos, t = 0, 1_700_000_000 * NS
    while pos + HEAD.size <= len(data) and len(packets) < MAX_PACKETS:
        k, step, n = HEAD.unpack_from(data, pos)
        pos += HEAD.size
        t += step * 1000
        packets.append((t, LINKS[k % len(LINKS)], data[pos:pos + n]))
        pos += n
    return packets


class MemorySink:
    """Each call's routed media in memory (an input is small)."""

    def __init__(self) -> None:
        self.media: dict[int, list[tuple[int, int, bytes]]] = {}

    def add(self, call: Any, ts_ns: int, flow: int, payload: bytes) -> None:
        self.media.setdefault(call.serial, []).append((ts_ns, flow, payload))

    def columns(self, serial: int) -> MediaColumns:
        import numpy as np

        rows = self.media.pop(serial, [])
        lengths = [len(p) for _t, _f, p in rows]
        offsets = np.cumsum([0, *lengths[:-1]]) if rows else np.zeros(0, np.int64)
        blob = np.frombuffer(b"".join(p for _t, _f, p in rows), np.uint8)
        return MediaColumns(np.array([t for t, _f, _p in rows], np.int64),
                            np.array([f for _t, f, _p in rows], np.int64),
                            np.asarray(offsets, np.int64), np.array(lengths, np.int64), blob)


SETTINGS = settings_from(Config())
OPTIONS = WriteOptions(durable=False)
OUT = tempfile.mkdtemp(prefix="calltap-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                       else None)


ARTIFACTS = [0]


def one_input(data: bytes) -> None:
    """The whole path over one input. An exception is checked by replaying the input in a
    process without instrumentation (atheris on 3.11 can miscompile): only a failure
    there too is a finding."""
    try:
        run_input(data)
    except Exception:
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(data)
            f.flush()
            r = subprocess.run([sys.executable, __file__, "--replay", f.name],
                               capture_output=True, text=True, check=False)
        if r.returncode == 0:
            ARTIFACTS[0] += 1
            print(f"instrumentation artifact #{ARTIFACTS[0]} (the replay runs clean)",
                  flush=True)
            return
        print(r.stderr[-3000:], file=sys.stderr)
        raise


def run_input(data: bytes) -> None:
    sink = MemorySink()
    rec = Recorder(SETTINGS, Policy(), sink)
    packets = decode_input(data)
    rec.feed(packets)
    rec.handle_timer((packets[-1][0] if packets else 0) + 3600 * NS)
    rec.finish()
    for ev in rec.events():
        if isinstance(ev, CallEnded) and ev.record is not None:
            media: list[Media] = [sink.columns(ev.call.serial),
                                  *(sink.columns(leg.serial) for leg in ev.record.legs)]
            write_call(ev.record, media if ev.record.legs else media[0], OUT, OPTIONS)
    if sum(len(f) for _d, _s, f in os.walk(OUT)) > 2000:  # keep the RAM directory small
        shutil.rmtree(OUT)
        os.makedirs(OUT)


def make_corpus(corpus: Path) -> int:
    corpus.mkdir(parents=True, exist_ok=True)
    sources = (sorted(SHARED.glob("*.pcap*")) if SHARED.is_dir() else []) + sorted(
        (ROOT / "pcaps").glob("*.pcap"))
    made = 0
    for path in sources:
        try:
            packets = [(t, link, bytes(f)) for t, link, f in open_capture(str(path))]
        except Exception:  # noqa: BLE001 - a capture our reader refuses is no seed
            continue
        starts = [k for k, (_t, _l, f) in enumerate(packets) if b"INVITE sip:" in f][:20]
        for k in starts or [0]:
            (corpus / f"{path.name}-{k}").write_bytes(encode(packets[k:k + WINDOW]))
            made += 1
    return made


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--work", default="")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--replay", metavar="FILE", help="run one input, uninstrumented")
    args = ap.parse_args()
    if args.replay:
        run_input(Path(args.replay).read_bytes())
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="calltap-atheris-"))
    corpus, crashes = work / "corpus", work / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    if not corpus.is_dir() or not any(corpus.iterdir()):
        print(f"seed corpus: {make_corpus(corpus)} inputs in {corpus}", flush=True)
    argv = [sys.argv[0], str(corpus), f"-max_total_time={args.seconds}",
            "-rss_limit_mb=2048", f"-artifact_prefix={crashes}/", "-max_len=262144",
            "-print_final_stats=1", "-timeout=30"]
    if args.jobs > 1:
        argv += [f"-jobs={args.jobs}", f"-workers={args.jobs}"]
    atheris.Setup(argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(OUT, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
