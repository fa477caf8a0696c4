"""Hostile capture: 100,000 INVITEs never answered, 10,000 TCP connections that never finish
a SIP message, and a flood of 100,000 first fragments that are never completed, followed by
one ordinary call. Imports it and prints the peak memory of the import (the bounds it must
stay under are printed beside it) and whether the ordinary call was still recorded.

    .venv/bin/python bench/hostile_bench.py
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from capture.pcapwrite import PcapWriter, ip_checksum, tcp_frame, udp_frame

NS = 1_000_000_000
T0 = 1_768_471_200 * NS

WRAPPER = """
import resource, sys
from calltap.cli import main
code = main(sys.argv[1:])
print(f"RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


def hostile(path: Path, invites: int, streams: int, fragments: int) -> int:
    with open(path, "wb") as f:
        w = PcapWriter(f)
        t = T0
        for i in range(invites):  # 10,000 a second, none answered
            src = bytes([10, 1, (i >> 8) & 255, i & 255])
            body = (f"v=0\r\no=- 1 1 IN IP4 10.1.0.1\r\ns=-\r\nc=IN IP4 10.1.0.1\r\nt=0 0\r\n"
                    f"m=audio {10000 + i % 50000} RTP/AVP 0\r\n").encode()
            sip = (f"INVITE sip:x@example.com SIP/2.0\r\nCall-ID: flood-{i}\r\n"
                   f"From: <sip:a{i}@example.com>;tag={i}\r\nTo: <sip:x@example.com>\r\n"
                   f"CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            w.write(t, udp_frame(src, 5060, b"\x0a\x09\x09\x09", 5060, sip))
            t += 100_000
        for i in range(streams):  # a SIP start, then nothing more, ever
            src = bytes([10, 2, (i >> 8) & 255, i & 255])
            head = b"INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/TCP x\r\n" + b"X: y" * 500
            w.write(t, tcp_frame(src, 30000 + i % 30000, b"\x0a\x09\x09\x09", 5060, 1, head))
            t += 10_000
        for i in range(fragments):  # first fragments whose rest never comes
            payload = b"\0" * 1200
            hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), i & 0xFFFF, 0x2000,
                              64, 17, 0, bytes([10, 3, (i >> 8) & 255, i & 255]),
                              b"\x0a\x09\x09\x09")
            hdr = hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:]
            eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
            w.write(t, eth + hdr + payload)
            t += 10_000
        return w.count


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="calltap-hostile-"))
    calltap = str(Path(sys.executable).parent / "calltap")
    n = hostile(work / "hostile.pcap", 100_000, 10_000, 100_000)
    subprocess.run([calltap, "generate", str(work / "ok.pcap"), "--calls", "1", "--duration",
                    "5"], check=True, capture_output=True)
    print(f"hostile capture: {n} packets, {(work / 'hostile.pcap').stat().st_size / 1e6:.0f} MB")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", WRAPPER, "import", str(work / "hostile.pcap"),
                        str(work / "ok.pcap"), "--out", str(work / "out"), "--no-progress",
                        "--jobs", "1"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    rss = int(r.stderr.rsplit("RSS ", 1)[1].split()[0])
    print(f"import: exit {r.returncode}, {wall:.1f} s, peak RSS {rss / 1024:.0f} MiB")
    print(r.stdout.strip().splitlines()[-1][:400])
    entries = [json.loads(x) for x in (work / "out" / "index.jsonl").read_text().splitlines()]
    ok = [e for e in entries if e["call_id"].startswith("gen-") and e["audio"]]
    print(f"calls indexed {len(entries)}; the ordinary call recorded with audio: {bool(ok)}")
    print("bounds: 100,000 calls (correlate.dialog.MAX_CALLS), 16,384 TCP streams holding "
          "64 MiB at most (capture.tcp), 1,024 partial datagrams holding 16 MiB at most "
          "(capture.fragments)")


if __name__ == "__main__":
    main()
