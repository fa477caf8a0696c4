"""Writer benchmark: seconds of call audio rendered per CPU second, per codec and format.

The calls are correlated once (an import that keeps each finished call's record and
spool instead of writing it); then every call is written with each output format and the
writer's CPU time (this process's, ``time.process_time``) is measured alone. A call-second
is one second of a two-party call (both directions).

    .venv/bin/python bench/writer_bench.py [--calls 20] [--duration 60] [--formats wav,flac]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from calltap.config import Config  # noqa: E402
from calltap.generate import GenOptions, codec_call, generate  # noqa: E402
from calltap.importer import settings_from  # noqa: E402
from capture.pcapfile import open_capture  # noqa: E402
from capture.spool import SpoolSet  # noqa: E402
from correlate.call import Call  # noqa: E402
from correlate.events import CallEnded  # noqa: E402
from correlate.policy import Policy  # noqa: E402
from correlate.record import CallRecord  # noqa: E402
from correlate.recorder import Recorder  # noqa: E402
from writer.job import write_call  # noqa: E402
from writer.options import WriteOptions  # noqa: E402


def finished_calls(pcap: Path, keep: Path) -> list[tuple[CallRecord, str | None]]:
    """Every call of ``pcap`` as the Recorder ends it, its media spooled under ``keep``."""
    spool = SpoolSet(str(keep))

    class Sink:
        def add(self, call: Call, ts_ns: int, flow: int, payload: bytes) -> None:
            spool.add(call.serial, ts_ns, flow, payload)

    rec = Recorder(settings_from(Config()), Policy(), Sink())
    jobs: list[tuple[CallRecord, str | None]] = []

    def take() -> None:
        for ev in rec.events():
            if isinstance(ev, CallEnded):
                path = spool.close_call(ev.call.serial)
                if ev.record is not None:
                    jobs.append((ev.record, path))

    rec.feed(open_capture(str(pcap)))
    take()
    rec.finish()
    take()
    return jobs


def render_rate(jobs: list[tuple[CallRecord, str | None]], out: Path, fmt: str
                ) -> tuple[float, float]:
    """(call-seconds of audio, CPU seconds) writing every job in ``fmt``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    options = WriteOptions(audio_format=fmt)
    t0 = time.process_time()
    entries = [write_call(record, spool, str(out), options)[0] for record, spool in jobs]
    cpu = time.process_time() - t0
    seconds = 0.0
    for e in entries:
        s: dict[str, Any] = json.loads((out / e["summary"]).read_text())
        seconds += s["audio_frames"] / s["sample_rate"] if s["sample_rate"] else 0.0
    return seconds, cpu


def one_way(work: Path, codec: str, duration: float) -> Path:
    """A call whose caller sends ``duration`` s of a speech-like signal in ``codec``,
    encoded by FFmpeg (G.722, Opus)."""
    import av

    name, rate, clock, pt, frame = {"G722": ("g722", 16000, 8000, 9, 320),
                                    "OPUS": ("libopus", 48000, 48000, 111, 960)}[codec]
    t = np.arange(int(duration * rate)) / rate
    pcm = (6000 * np.sin(2 * np.pi * (300 + 200 * np.sin(2 * np.pi * 0.5 * t)) * t)
           * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)
    ctx: Any = av.CodecContext.create(name, "w")
    ctx.sample_rate, ctx.layout, ctx.format = rate, "mono", "s16"
    ctx.open()
    payloads: list[bytes] = []
    for k in range(0, len(pcm) - frame + 1, frame):
        f = av.AudioFrame.from_ndarray(pcm[None, k:k + frame], format="s16", layout="mono")
        f.sample_rate, f.pts = rate, k
        payloads += [bytes(p) for p in ctx.encode(f)]
    step = frame * clock // rate
    path = work / f"{codec.lower()}.pcap"
    codec_call(str(path), "opus" if codec == "OPUS" else codec, clock, pt, payloads,
               [step] * len(payloads), channels=2 if codec == "OPUS" else 1)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--formats", default="wav,flac,opus,mp3")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="calltap-writer-bench-"))
    try:
        rows: list[tuple[str, str, float, float]] = []
        for codec in ("PCMU", "PCMA"):
            pcap = work / f"{codec}.pcap"
            generate(str(pcap), GenOptions(calls=args.calls, duration=args.duration,
                                           codecs=(codec,), loss=0.005, jitter_ms=4.0,
                                           seed=5))
            jobs = finished_calls(pcap, work / f"jobs-{codec}")
            for fmt in args.formats.split(","):
                rows.append((codec, fmt, *render_rate(jobs, work / "out", fmt)))
        for codec in ("G722", "OPUS"):
            jobs = finished_calls(one_way(work, codec, args.duration * 4),
                                  work / f"jobs-{codec}")
            rows.append((codec, "wav", *render_rate(jobs, work / "out", "wav")))
        print(f"{'codec':6} {'format':6} {'audio s':>9} {'CPU s':>7} {'audio s per CPU s':>18}")
        for codec, fmt, seconds, cpu in rows:
            print(f"{codec:6} {fmt:6} {seconds:9.0f} {cpu:7.2f} {seconds / cpu:18.0f}")
        print("(a call-second is both directions of one second of a call; G722 and OPUS are "
              "one direction)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
