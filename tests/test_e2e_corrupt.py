"""Damaged captures never cost a call: random byte errors (``editcap -E``) in real captures,
and RTP timestamps, sequence numbers and SSRCs that leap in a generated one. Every call's
media is still recorded, no recording is longer than the capture it came from, and no
error ends a call."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from calltap.generate import GenOptions, generate
from capture.pcapfile import open_capture
from tests.helpers import load_index, load_summary, need_shared, pcap_bytes, run_import

NS = 1_000_000_000


def span_s(pcap: Path) -> float:
    times = [t for t, _l, _f in open_capture(str(pcap))]
    return (max(times) - min(times)) / NS


def audio_seconds(out: Path) -> list[float]:
    return [s["audio_frames"] / s["sample_rate"] for s in
            (load_summary(out, e) for e in load_index(out)) if s["sample_rate"]]


def check(pcap: Path, out: Path) -> list[float]:
    imp = run_import([pcap], out, jobs=1)
    assert imp.errors == [], imp.errors
    seconds = audio_seconds(out)
    # positions come from capture time: a recording never outlasts its capture
    assert all(s <= span_s(pcap) + 2.0 for s in seconds), (seconds, span_s(pcap))
    for e in load_index(out):
        if e["audio"]:
            assert (out / e["audio"]).stat().st_size < 64 * 1024 * 1024
    return seconds


@pytest.mark.parametrize("name", ["SIP_CALL_RTP_G711.pcap", "sip-rtp-g711.pcap",
                                  "Asterisk_ZFONE_XLITE.pcap"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_byte_errors_keep_every_calls_media(name: str, seed: int,
                                                   tmp_path: Path) -> None:
    src = need_shared() / name
    if shutil.which("editcap") is None:
        pytest.skip("editcap is not installed (.ci/setup installs tshark)")
    damaged = tmp_path / name
    subprocess.run(["editcap", "-E", "0.02", "--seed", str(seed), str(src), str(damaged)],
                   check=True, capture_output=True)
    clean = audio_seconds_of(src, tmp_path / "clean")
    got = check(damaged, tmp_path / "damaged")
    # SIP this damaged is lost, its media is not: it is recorded as unsignalled calls that
    # cover what the clean import recorded
    assert got and sum(got) >= 0.8 * max(clean), (got, clean)


def audio_seconds_of(pcap: Path, out: Path) -> list[float]:
    run_import([pcap], out, jobs=1)
    return audio_seconds(out)


def test_leaping_rtp_fields_stay_within_the_capture(tmp_path: Path) -> None:
    """RTP timestamps, sequence numbers and SSRCs overwritten at random in 15% of the
    packets (more SSRCs than a direction tracks): every call is still written, each no
    longer than the capture."""
    clean = tmp_path / "clean.pcap"
    generate(str(clean), GenOptions(calls=3, duration=20.0, seed=31))
    rng = random.Random(7)
    frames = []
    for t, _link, f in open_capture(str(clean)):
        b = bytearray(f)
        # UDP payloads of RTP start after Ethernet, IPv4 and UDP headers (42 bytes)
        if len(b) > 54 and b[42] >> 6 == 2 and b[43] & 0x7F in (0, 8) and rng.random() < 0.15:
            field = rng.choice((46, 44, 50, 50))  # timestamp, sequence number, SSRC
            width = 2 if field == 44 else 4
            b[field:field + width] = rng.randbytes(width)
        frames.append((t, bytes(b)))
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(pcap_bytes(frames))
    seconds = check(damaged, tmp_path / "out")
    index = load_index(tmp_path / "out")
    assert len([e for e in index if e["status"] != "unsignalled"]) == 3
    assert all(s > 15.0 for s in seconds)
