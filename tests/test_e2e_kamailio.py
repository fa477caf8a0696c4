"""A real relay: SIPp speech calls through Kamailio with rtpengine anchoring the media, all
on loopback, captured with tcpdump where a mirror port at the proxy would see them (both
hops). Every call is recorded once, and each channel is what that side's SIPp played:
measured as the normalised cross-correlation with the G.711 speech it sent (1.0 is the
same audio; the other side's speech scores far below). Needs root (tcpdump), kamailio,
rtpengine and sipp; skips with the reason otherwise."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from capture.decode import decode
from capture.pcapfile import open_capture
from tests.helpers import ROOT, load_index, run_import, tcpdump_listening, wait_for_log
from writer.g711 import ulaw_decode

SIPP = ROOT / "pcaps" / "sipp"
PROXY, UAS, UAC, CTRL, CLI = 17060, 17070, 17071, 17223, 17224
UAS_MEDIA, UAC_MEDIA, RELAY_PORTS = 17300, 17350, (17400, 17499)
BPF = f"udp and portrange {PROXY}-{RELAY_PORTS[1]} and not port {CTRL}"
# Same audio as sent: the correlation a clean channel reaches at least.
MIN_CORRELATION = 0.95

KAMAILIO_CFG = f"""#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=udp:127.0.0.1:{PROXY}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:{CTRL}")
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("INVITE") && !has_totag()) {{
        record_route();
        if (has_body("application/sdp")) {{
            rtpengine_offer("replace-origin replace-session-connection");
        }}
        t_on_reply("REPLY");
    }}
    if (is_method("BYE|CANCEL")) {{ rtpengine_delete(); }}
    $du = "sip:127.0.0.1:{UAS}";
    if (is_method("ACK") && !t_check_trans()) {{ forward(); exit; }}
    t_relay();
    exit;
}}
onreply_route[REPLY] {{
    if (has_body("application/sdp")) {{
        rtpengine_answer("replace-origin replace-session-connection");
    }}
}}
"""


def _need() -> None:
    if os.geteuid() != 0:
        pytest.skip("capturing on loopback needs root")
    for tool in ("kamailio", "rtpengine", "sipp", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (.ci/setup installs it)")


def _modules() -> str:
    for d in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/"
              "kamailio/modules", "/usr/lib/kamailio/modules"):
        if os.path.isdir(d):
            return d
    pytest.skip("kamailio's modules directory not found")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    _need()
    work = tmp_path_factory.mktemp("kamailio")
    for f in SIPP.iterdir():
        shutil.copy(f, work / f.name)  # SIPp finds the speech pcaps beside its scenario
    cfg = work / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.replace("#!KAMAILIO\n",
                                        f'#!KAMAILIO\nmpath="{_modules()}/"\n'))
    procs: list[subprocess.Popen[bytes]] = []

    def start(cmd: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        start(["rtpengine", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{CTRL}",
               f"--port-min={RELAY_PORTS[0]}", f"--port-max={RELAY_PORTS[1]}", "--table=-1",
               f"--listen-cli=127.0.0.1:{CLI}", "--foreground", "--log-stderr",
               f"--pidfile={work / 'rtpengine.pid'}",
               "--no-redis-required"], "rtpengine")
        start(["kamailio", "-DD", "-E", "-f", str(cfg), "-P", str(work / "kamailio.pid")],
              "kamailio")
        time.sleep(1.5)
        td = start(["tcpdump", "-i", "lo", "-U", "-w", str(work / "relay.pcap"), BPF],
                   "tcpdump")
        wait_for_log(work / "tcpdump.log", td, tcpdump_listening)
        uas = start(["sipp", "-sf", "uas.xml", "-i", "127.0.0.1", "-p", str(UAS), "-mi",
                     "127.0.0.1", "-mp", str(UAS_MEDIA), "-m", "2", "-nostdin"], "uas")
        time.sleep(0.5)
        uac = start(["sipp", "-sf", "uac.xml", "-i", "127.0.0.1", "-p", str(UAC), "-mi",
                     "127.0.0.1", "-mp", str(UAC_MEDIA), "-s", "bob",
                     f"127.0.0.1:{PROXY}", "-m", "2", "-l", "1", "-r", "1", "-rp", "1000",
                     "-nostdin"], "uac")
        uac.wait(60)
        uas.wait(20)
        time.sleep(1.0)
        td.send_signal(signal.SIGINT)
        td.wait(10)
        assert uac.returncode == 0, (work / "uac.log").read_text()[-2000:]
        yield work / "relay.pcap"
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


def _speech(pcap: Path) -> np.ndarray:
    pcm = []
    for _t, link, frame in open_capture(str(pcap)):
        r = decode(link, frame)
        if not isinstance(r, int) and len(r[5]) > 12 and r[5][1] & 0x7F == 0:
            pcm.append(ulaw_decode(r[5][12:]))
    return np.concatenate(pcm).astype(np.float64)


def _similarity(ref: np.ndarray, rec: np.ndarray) -> float:
    """The normalised cross-correlation of ``rec`` with ``ref`` at their best lag."""
    size = 1 << int(np.ceil(np.log2(len(ref) + len(rec))))
    c = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)
    k = int(np.argmax(c))
    lag = k if k < size // 2 else k - size
    a = rec[max(lag, 0):]
    b = ref[max(-lag, 0):]
    m = min(len(a), len(b))
    a, b = a[:m], b[:m]
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def _channels(out: Path, swapped: bool = False) -> list[list[float]]:
    refs = [_speech(SIPP / "caller-speech.pcap"), _speech(SIPP / "callee-speech.pcap")]
    if swapped:
        refs.reverse()
    scores = []
    for e in load_index(out):
        with wave.open(str(out / e["audio"])) as w:
            audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
        scores.append([_similarity(refs[c], audio[:, c].astype(np.float64)) for c in (0, 1)])
    return scores


@pytest.fixture(scope="module")
def recorded(capture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("relay-import") / "out"
    run_import([capture], out, jobs=1)
    return out


def test_each_call_once_each_channel_what_its_side_sent(recorded: Path) -> None:
    entries = load_index(recorded)
    assert len(entries) == 2 and len({e["call_id"] for e in entries}) == 2
    for scores in _channels(recorded):
        assert min(scores) >= MIN_CORRELATION, scores
    for e in entries:
        s = json.loads((recorded / e["summary"]).read_text())
        for d in s["directions"]:
            assert "relay" in d, f"the media did not go through rtpengine: {d['flows']}"
            assert len(d["segments"]) == 1 and len(d["relay"]["other_hops"]) == 1
            assert d["packets"] == d["relay"]["other_hops"][0]["packets"] > 200


def test_the_measure_fails_the_other_sides_speech(recorded: Path) -> None:
    # The negative control: a recording whose channels hold the wrong side fails. (Mixing
    # both hops is no control: on loopback the relay adds so little delay that the mix
    # scored anywhere from 0.87 to 0.96, on either side of the threshold.)
    for scores in _channels(recorded, swapped=True):
        assert max(scores) < MIN_CORRELATION / 2, scores
