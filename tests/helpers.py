"""Shared test helpers: locations, capture builders, running an import, reading results."""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calltap.config import Config
from calltap.importer import Importer
from capture.pcapwrite import pcap_header, pcap_record, udp_frame

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_PCAPS = SHARED / "pcaps"
SCHEMA = SHARED / "schemas" / "rfc7865-recording.xsd"
ALL_SHARED = sorted(p.name for p in SHARED_PCAPS.glob("*")
                    if p.suffix in (".pcap", ".pcapng", ".cap"))
"""Every capture of the shared corpus (empty without it: tests built on it then skip)."""


def need_shared() -> Path:
    """The shared capture corpus, or skip: a fresh clone without ../shared has none."""
    if not SHARED_PCAPS.is_dir():
        pytest.skip("../shared/pcaps is absent (fresh clone without the shared corpus)")
    return SHARED_PCAPS


def run_import(files: list[str | Path], out: Path, **cfg: Any) -> Importer:
    """Import ``files`` into ``out`` in-process, as ``calltap import`` does."""
    imp = Importer(Config(out=str(out), **cfg))
    for f in files:
        imp.import_file(str(f))
    imp.finish()
    return imp


# How long a process may take to become ready: a CI machine busy with the other half of the
# suite can take several seconds to start Python and numpy.
STARTUP_S = 60.0


def wait_for_log(log: Path, proc: subprocess.Popen[bytes], ready: Callable[[str], bool],
                 count: int = 1) -> None:
    """Return once ``log`` (``proc``'s stderr) holds ``count`` lines ``ready`` accepts; fail
    with the log's tail when ``proc`` exits first or STARTUP_S passes (killing it)."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        if sum(1 for line in text.splitlines() if ready(line)) >= count:
            return
        assert proc.poll() is None, f"{proc.args!r} exited ({proc.returncode}): {text[-1500:]}"
        if time.monotonic() > deadline:
            proc.kill()  # the caller never gets it to stop
            proc.wait()
            raise AssertionError(f"{proc.args!r} not ready: {text[-1500:]}")
        time.sleep(0.05)


def capture_started(line: str) -> bool:
    """A live capture's log line saying it has its interface open: from then on the kernel
    keeps every packet for it."""
    if not line.startswith("{"):
        return False
    try:
        rec = json.loads(line)
    except ValueError:
        return False
    return bool(rec.get("component") == "capture" and rec.get("msg") == "started")


def tcpdump_listening(line: str) -> bool:
    """tcpdump's line saying it has its interface open."""
    return line.startswith("tcpdump: listening on ")


def stop_all(procs: list[Any], timeout: float = 20.0) -> None:
    """SIGTERM every process of a test still running, give them ``timeout`` seconds to exit
    (and to stop their own children), then kill what is left."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.0, deadline - time.monotonic()))
    kill_all(procs)


def kill_all(procs: list[Any]) -> None:
    """Kill (-9) every process of a test still running, and reap it."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def load_index(out: Path) -> list[dict[str, Any]]:
    path = out / "index.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def load_summary(out: Path, entry: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / entry["summary"]).read_text())
    return data


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return frames.reshape(-1, w.getnchannels()), w.getframerate()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def ip4(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


def sip_invite(call_id: str = "abc@test", tag: str = "t1", sdp_ip: str = "192.0.2.1",
               port: int = 4000, compact: bool = False) -> bytes:
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {sdp_ip}\r\ns=-\r\nc=IN IP4 {sdp_ip}\r\nt=0 0\r\n"
           f"m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n").encode()
    if compact:
        hdrs = [f"i: {call_id}", f"f: <sip:a@x>;tag={tag}", "t: <sip:b@y>", "CSeq: 1 INVITE",
                "v: SIP/2.0/UDP 192.0.2.1", "c: application/sdp", f"l: {len(sdp)}"]
    else:
        hdrs = [f"Call-ID: {call_id}", f"From: <sip:a@x>;tag={tag}", "To: <sip:b@y>",
                "CSeq: 1 INVITE", "Via: SIP/2.0/UDP 192.0.2.1",
                "Content-Type: application/sdp", f"Content-Length: {len(sdp)}"]
    return ("INVITE sip:b@y SIP/2.0\r\n" + "\r\n".join(hdrs) + "\r\n\r\n").encode() + sdp


def pcap_bytes(frames: list[tuple[int, bytes]], linktype: int = 1, nanosecond: bool = False,
               big_endian: bool = False) -> bytes:
    """A pcap file image; ``big_endian`` rewrites the headers in the other byte order."""
    if not big_endian:
        out = pcap_header(linktype, nanosecond)
        for ts, fr in frames:
            out += pcap_record(ts, fr, nanosecond)
        return out
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = struct.pack(">IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for ts, fr in frames:
        sec, rem = divmod(ts, 1_000_000_000)
        out += struct.pack(">IIII", sec, rem if nanosecond else rem // 1000, len(fr), len(fr)) + fr
    return out


def _opt(code: int, val: bytes) -> bytes:
    pad = (-len(val)) % 4
    return struct.pack("<HH", code, len(val)) + val + b"\0" * pad


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * ((-len(body)) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def pcapng_bytes(ifaces: list[tuple[int, int | None]], packets: list[tuple[int, int, bytes]],
                 simple: bytes | None = None) -> bytes:
    """A pcapng image: interfaces (linktype, tsresol option or None), then EPBs
    (interface, timestamp in that interface's units, frame), then an optional SPB."""
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for link, res in ifaces:
        opts = _opt(9, bytes([res])) + _opt(0, b"") if res is not None else b""
        out += _block(1, struct.pack("<HHI", link, 0, 262144) + opts)
    for iface, units, frame in packets:
        body = struct.pack("<IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame))
        out += _block(6, body + frame)
    if simple is not None:
        out += _block(3, struct.pack("<I", len(simple)) + simple)
    return out


def udp4(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    return udp_frame(ip4(src), sport, ip4(dst), dport, payload)


def bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def record_of(call: Any) -> Any:
    """A finished call's record with the default identities (From, To)."""
    from correlate.policy import IdentitySpec
    from correlate.record import finished

    return finished(call, IdentitySpec())


def leaked(root: Path, needles: list[bytes]) -> list[str]:
    """The files under ``root`` holding any of ``needles`` (pieces of audio that must not
    rest there in plain)."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            data = (Path(dirpath) / name).read_bytes()
            if any(n in data for n in needles):
                found.append(name)
    return found
