"""`calltap stats` counts every stream exactly as import's summaries do, from the batch
path, and reports bad files in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from calltap.config import Config
from calltap.generate import GenOptions, generate
from calltap.streams import analyse, format_table
from tests.helpers import ALL_SHARED, ROOT, load_index, load_summary, need_shared, run_import
from writer.options import WriteOptions

KEYS = ("received", "packets", "expected", "lost", "cumulative_lost", "duplicates",
        "out_of_order", "sequence_errors", "delta_ms", "jitter_ms", "clock_skew_ms",
        "clock_drift_ppm", "payload_types", "marker_bits", "bytes", "jitter_buffer_discards")


# Streams `calltap stats` reports per shared capture (files not listed have none): pinned,
# so a file that silently lost its streams fails instead of comparing two empty sets.
STREAMS = {
    '09a_2833_dtmf.pcap': 1,
    '1filtered.cap': 6,
    'Asterisk_ZFONE_XLITE.pcap': 3,
    'FAX-Call-t38-CA-TDM-SIP-FB-1.pcap': 2,
    'LtoZ_rtpFilter_fail_2.pcap': 2,
    'SIP-SRTP-Normal_Call_two_parties.pcap': 4,
    'SIP-over-TLS-RSA-SRTP_Normal_Call_two_parties.pcap': 4,
    'SIP-over-TLS-RTP-Normal_Call_two_parties.pcap': 4,
    'SIP_CALL_RTP_G711.pcap': 5,
    'SIP_DTMF2.pcap': 2,
    'aaa.pcap': 1,
    'b2bua-asterisk.pcapng': 2,
    'dtmf_2833_1.pcap': 1,
    'g711a.pcap': 1,
    'marseillaise-srtp.pcap': 1,
    'nb6-telephone.pcap': 2,
    'port-16_vlan24_200.pcap': 1,
    'rtp-protocol.pcap': 2,
    'sip-rtp-dvi4.pcap': 2,
    'sip-rtp-g711.pcap': 2,
    'sip-rtp-g722.pcap': 1,
    'sip-rtp-g726.pcap': 8,
    'sip-rtp-g729a.pcap': 1,
    'sip-rtp-gsm.pcap': 1,
    'sip-rtp-ilbc.pcap': 1,
    'sip-rtp-l16.pcap': 4,
    'sip-rtp-lpc.pcap': 1,
    'sip-rtp-opus-hybrid.pcap': 1,
    'sip-rtp-opus.pcap': 1,
    'sip_ipv4_tcp.pcap': 2,
    'siprec_dual_channel_udp.pcap': 2,
    'testing.ext.pcap': 1,
}


def same_as_import(path: Path, out: Path) -> list[dict[str, Any]]:
    run_import([path], out, dedup_window=0.0, jobs=1)
    imported = {}
    for e in load_index(out):
        for d in load_summary(out, e)["directions"]:
            for s in d["ssrcs"]:
                imported[(e["call_id"], s["flow"], s["ssrc"])] = s
    calls, _drops, _warning = analyse(str(path), Config(), WriteOptions())
    mine = {(c["call_id"], s["flow"], s["ssrc"]): s for c in calls for s in c["streams"]}
    assert set(mine) == set(imported)
    for key, s in mine.items():
        assert {k: s[k] for k in KEYS} == {k: imported[key][k] for k in KEYS}, key
    return calls


def test_messy_generated_capture(tmp_path: Path) -> None:
    pcap = tmp_path / "messy.pcap"
    generate(str(pcap), GenOptions(calls=5, duration=6.0, loss=0.03, reorder=0.03,
                                   duplicate=0.02, jitter_ms=8.0, rtcp=True, seed=9))
    calls = same_as_import(pcap, tmp_path / "o")
    assert len(calls) == 5 and all(len(c["streams"]) == 2 for c in calls)
    assert {s["side"] for c in calls for s in c["streams"]} == {"caller", "callee"}
    assert all(s["mos"] is not None and 3.5 < s["mos"] <= 4.5 for c in calls
               for s in c["streams"])
    table = format_table(calls)
    assert table.count("gen-") == 5 and "caller" in table and "max jit" in table


def test_sipp_capture(tmp_path: Path) -> None:
    same_as_import(ROOT / "pcaps" / "sipp-speech.pcap", tmp_path)


@pytest.mark.parametrize("name", ALL_SHARED)
def test_shared_captures(name: str, tmp_path: Path) -> None:
    path = need_shared() / name
    if name not in STREAMS:  # no media: stats alone must find none (no import to compare)
        calls, _drops, _warning = analyse(str(path), Config(), WriteOptions())
        assert not any(c["streams"] for c in calls)
        return
    calls = same_as_import(path, tmp_path)
    assert sum(len(c["streams"]) for c in calls) == STREAMS[name]


def test_cli_json_table_and_bad_files(tmp_path: Path) -> None:
    sample = str(ROOT / "pcaps" / "sample-calls.pcap")
    bad = tmp_path / "bad.pcap"
    bad.write_text("not a capture")
    calltap = [sys.executable, "-m", "calltap.cli", "stats"]
    r = subprocess.run([*calltap, "--json", sample], capture_output=True, text=True, check=True)
    (report,) = json.loads(r.stdout)
    assert report["file"] == sample and len(report["calls"]) == 4
    assert all(s["received"] > 250 for c in report["calls"] for s in c["streams"])
    r = subprocess.run([*calltap, sample, str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "bad.pcap" in r.stderr
    assert "gen-7-0@calltap.test" in r.stdout and "PCMU/8000" in r.stdout
