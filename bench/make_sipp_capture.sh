#!/usr/bin/env bash
# Rebuild pcaps/sipp-speech.pcap: two real SIPp calls on loopback, both sides streaming
# espeak-ng speech as PCMU, captured with tcpdump. Needs root (tcpdump, SIPp raw sockets).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)  # SIPp runs in the temporary directory: its logs land there
PY=.venv/bin/python
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

espeak-ng -v en-us -s 150 -w "$tmp/a.wav" "This is the caller speaking. One, two, three, four, five."
espeak-ng -v en-gb -s 140 -p 30 -w "$tmp/b.wav" "Hello, the callee answers. Six, seven, eight, nine, ten."
for s in a b; do sox "$tmp/$s.wav" -r 8000 -c 1 -b 16 -e signed-integer "$tmp/$s.raw"; done
$PY - "$tmp" <<'PY'
import sys
import numpy as np
from calltap.generate import write_rtp_pcap
tmp = sys.argv[1]
for side, ssrc, out in (("a", 0x11110000, "caller"), ("b", 0x22220000, "callee")):
    pcm = np.fromfile(f"{tmp}/{side}.raw", dtype="<i2")
    write_rtp_pcap(f"pcaps/sipp/{out}-speech.pcap", pcm, "PCMU", ssrc=ssrc, seed=len(out))
PY

tcpdump -i lo -U -s 0 -w "$tmp/cap.pcap" 'udp and (port 5070 or port 5071 or portrange 16000-16100 or portrange 17000-17100)' 2>/dev/null &
sleep 1
(cd "$tmp" && exec sipp -sf "$root/pcaps/sipp/uas.xml" -i 127.0.0.1 -p 5070 -mi 127.0.0.1 -mp 16000 -m 2 -nostdin >/dev/null 2>&1) &
uas=$!
sleep 0.5
(cd "$tmp" && sipp -sf "$root/pcaps/sipp/uac.xml" -i 127.0.0.1 -p 5071 -mi 127.0.0.1 -mp 17000 -s bob 127.0.0.1:5070 -m 2 -l 1 -r 1 -nostdin >/dev/null 2>&1) || true
wait "$uas" || true
sleep 1
kill -INT %1
wait %1 || true
cp "$tmp/cap.pcap" pcaps/sipp-speech.pcap
echo "wrote pcaps/sipp-speech.pcap"
