"""Recording policy end to end: who is recorded, in which group, under which identities;
pause and resume keep the paused audio out of every file; bad policy files."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from calltap.config import Config
from calltap.generate import T0_NS, GenOptions, generate, varied_party
from calltap.importer import Importer
from calltap.policyfile import PolicyError
from capture.pcapfile import close_capture, open_capture
from tests.helpers import leaked, load_index, load_summary, read_wav
from writer.g711 import ulaw_decode

POLICY = """\
timezone = "UTC"

[identity]
caller = ["P-Asserted-Identity", "From"]
callee = ["To"]
original_callee = ["Diversion"]
extra_headers = ["X-Queue"]

[[rule]]
name = "hr line"
callee = "+442079461000"
record = false

[[rule]]
name = "internal"
caller = { regex = "^2\\\\d{3}$" }
record = false

[[rule]]
name = "trading desk"
callee = { prefix = "+44207946" }
group = "trading"
retention = "7y"
keep_pcap = true

[[rule]]
name = "lab"
caller_ip = ["10.1.0.0/16"]
group = "lab"

[[rule]]
name = "sales"
header = { "X-Queue" = "sales" }
group = "sales"

[[rule]]
name = "toll free"
callee = { regex = "^\\\\+1800" }
group = "us"

[[rule]]
name = "after hours"
hours = ["20:00-08:00"]
group = "after-hours"
format = "flac"

[[rule]]
name = "everything else"
group = "general"
"""

CALLS = 50
SPACING_NS = (16 * 60 + 7) * 1_000_000_000  # the generator's varied, sequential start times


def expected(i: int) -> tuple[bool, str, str, str]:
    """(recorded, group, caller URI, callee URI) of varied call i, worked out here from the
    generator's table, independently of the policy code."""
    p = varied_party(i)
    caller_ids = [p["pai"]] if "pai" in p else []
    caller_ids.append(p["caller"])
    callee_ids = [p["callee"], *([p["diversion"]] if "diversion" in p else [])]
    caller_uri = (f"sip:{p['pai']}@pbx.example" if "pai" in p
                  else f"sip:{p['caller']}@example.com")
    callee_uri = f"sip:{p['callee']}@example.net"
    hour = datetime.fromtimestamp((T0_NS + i * SPACING_NS) / 1e9, UTC).hour
    if "+442079461000" in callee_ids:
        return False, "", caller_uri, callee_uri
    if any(re.fullmatch(r"2\d{3}", c) for c in caller_ids):
        return False, "", caller_uri, callee_uri
    if any(c.startswith("+44207946") for c in callee_ids):
        group = "trading"
    elif p["net"] == "10.1.0":
        group = "lab"
    elif p["queue"] == "sales":
        group = "sales"
    elif any(c.startswith("+1800") for c in callee_ids):
        group = "us"
    elif hour >= 20 or hour < 8:
        group = "after-hours"
    else:
        group = "general"
    return True, group, caller_uri, callee_uri


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("policy")
    pcap, policy = d / "varied.pcap", d / "policy.toml"
    generate(str(pcap), GenOptions(calls=CALLS, duration=2.0, concurrent=False, varied=True,
                                   seed=4, codecs=("PCMU",)))
    policy.write_text(POLICY)
    return pcap, policy


def test_fifty_calls_recorded_grouped_and_named_as_the_table_says(
        varied: tuple[Path, Path], tmp_path: Path) -> None:
    pcap, policy = varied
    imp = Importer(Config(out=str(tmp_path), policy=str(policy), jobs=1, progress=False))
    imp.import_file(str(pcap))
    imp.finish()
    want = {f"gen-4-{i}@calltap.test": expected(i) for i in range(CALLS)}
    recorded = {k: v for k, v in want.items() if v[0]}
    assert len(want) - len(recorded) >= 6 and len({v[1] for v in recorded.values()}) == 6
    got = {e["call_id"]: e for e in load_index(tmp_path)}
    assert set(got) == set(recorded)
    assert imp.calls_skipped == len(want) - len(recorded)
    for cid, (_rec, group, caller, callee) in recorded.items():
        e = got[cid]
        assert (e["group"], e["caller"], e["callee"]) == (group, caller, callee), cid
        summary = load_summary(tmp_path, e)
        ids = summary["call"]["identities"]
        i = int(cid.split("-")[2].split("@")[0])
        p = varied_party(i)
        assert [x["uri"] for x in ids["caller"]] == (
            [f"sip:{p['pai']}@pbx.example"] if "pai" in p else []) + [
            f"sip:{p['caller']}@example.com"]
        if p["queue"]:
            assert summary["call"]["headers"] == {"x-queue": [p["queue"]]}
        xml = (tmp_path / e["metadata"]).read_text()
        assert xml.count("<nameID ") == len(ids["caller"]) + len(ids["callee"])
        assert f"<ct:label>{group}</ct:label>" in xml and "<group-ref>" in xml
        if group == "trading":
            assert e["retention"] == "7y" and summary["evidence_pcap"]
            r = open_capture(str(tmp_path / summary["evidence_pcap"]))
            assert sum(1 for _ in r) == sum(d["packets"] for d in summary["directions"])
            close_capture(r)
        if group == "after-hours":
            assert e["audio"].endswith(".flac")


def test_policy_test_explains_the_match(varied: tuple[Path, Path]) -> None:
    pcap, policy = varied
    cmd = [sys.executable, "-m", "calltap.cli", "policy", "test", str(policy)]
    # call 21 is diverted from the HR line (21 % 7 == 0): skipped by the first rule
    r = subprocess.run([*cmd, "--capture", str(pcap), "--call", "gen-4-21@calltap.test"],
                       capture_output=True, text=True, check=True)
    assert "rule 'hr line' (line 9): MATCH: callee exact '+442079461000' " \
           "('+442079461000') -> skip" in r.stdout
    # by hand: a sales queue call at 21:30 from a lab address
    r = subprocess.run([*cmd, "--caller", "sip:+4930111@x", "--callee", "sip:+4930222@y",
                        "--header", "X-Queue=support", "--caller-ip", "192.0.2.9",
                        "--time", "2026-01-15T21:30:00+00:00"],
                       capture_output=True, text=True, check=True)
    lines = r.stdout.splitlines()
    assert "rule 'sales' (line 31): no: header x-queue exact 'sales' does not hold" in lines[5]
    assert "rule 'after hours' (line 41): MATCH: time in 20:00-08:00 ('21:30')" in lines[7]
    assert len(lines) == 8  # the rules after the first match are not tried


@pytest.mark.parametrize("by", ["header", "info", "dtmf"])
def test_pause_and_resume(by: str, tmp_path: Path) -> None:
    pcap, policy = tmp_path / "pause.pcap", tmp_path / "pause.toml"
    generate(str(pcap), GenOptions(calls=1, duration=30.0, pause_at=10.0, resume_at=20.0,
                                   pause_by=by, seed=6, codecs=("PCMU",)))
    policy.write_text('[pause]\nheader = "X-Record"\n'
                      'info_content_type = "application/x-record-control"\n'
                      'dtmf_pause = "*7"\ndtmf_resume = "*8"\n')
    # the paused audio as the phones sent it: each packet's payload, and decoded
    secrets = []
    r = open_capture(str(pcap))
    first = 0
    for ts, _link, frame in r:
        payload = frame[42:]
        if len(payload) == 172 and payload[1] & 0x7F == 0:
            first = first or ts
            if 10.0 <= (ts - first) / 1e9 < 19.9 and (ts - first) / 1e9 > 10.1:
                secrets.append(payload[12:])
    close_capture(r)
    assert len(secrets) > 900
    needles = [s[40:72] for s in secrets] + [
        ulaw_decode(np.frombuffer(s, np.uint8)).tobytes()[80:144] for s in secrets]

    out = tmp_path / "out"
    imp = Importer(Config(out=str(out), policy=str(policy), jobs=1, progress=False))
    # as pcapng, read as a stream: a call's media is spooled (a classic pcap's stays in
    # the mapped capture until the call is written)
    if shutil.which("editcap") is None:
        pytest.skip("editcap is not installed (.ci/setup installs tshark)")
    streamed = tmp_path / "paused.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(streamed)], check=True,
                   capture_output=True)
    imp.import_file(str(streamed))
    spools = [p for p in out.iterdir() if p.name.startswith(".spool-")]
    assert spools and any(f for s in spools for f in s.iterdir())  # the call is spooled
    assert leaked(out, needles) == []  # not in the spool, while the call is still open
    imp.finish()
    assert leaked(out, needles) == []  # nor in any file written
    (e,) = load_index(out)
    summary = load_summary(out, e)
    (pause,) = summary["call"]["paused"]
    assert 9.8 <= pause["offset"] <= 10.0 and 10.0 <= pause["seconds"] <= 10.3
    audio, rate = read_wav(out / e["audio"])
    a = round(pause["offset"] * rate)
    b = round((pause["offset"] + pause["seconds"]) * rate)
    # digital zero in both channels (the summary gives the span to the millisecond)
    assert not audio[a + rate // 1000:b - rate // 1000].any()
    for lo, hi in ((1.0, 9.5), (21.0, 29.0)):
        part = audio[int(lo * rate):int(hi * rate)].astype(np.float64)
        assert all(np.sqrt(np.mean(part[:, c] ** 2)) > 1000 for c in (0, 1))
    assert e["paused_seconds"] == pause["seconds"]
    assert "<ct:paused " in (out / e["metadata"]).read_text()


def test_invalid_policy_fails_at_start_with_line_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "a"\ncaller_ip = ["10.0.0.0/33"]\n')
    with pytest.raises(PolicyError, match=r"bad.toml line 3: rule 'a': caller_ip: "
                                          r"'10.0.0.0/33' is not an address or network"):
        Importer(Config(out=str(tmp_path / "o"), policy=str(bad)))
    r = subprocess.run([sys.executable, "-m", "calltap.cli", "import", "--policy", str(bad),
                        "--out", str(tmp_path / "o"), "nothing.pcap"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad.toml line 3" in r.stderr


def test_reload_on_sighup_keeps_the_old_policy_when_the_new_one_is_bad(
        tmp_path: Path) -> None:
    from calltap.cli import reload_on_sighup

    pcap = tmp_path / "calls.pcap"
    generate(str(pcap), GenOptions(calls=4, duration=45.0, seed=8, codecs=("PCMU",)))
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nname = "all"\ngroup = "first"\n')
    imp = Importer(Config(out=str(tmp_path / "o"), policy=str(policy), jobs=1,
                          progress=False))
    old = signal.getsignal(signal.SIGHUP)
    try:
        reload_on_sighup(imp)
        policy.write_text('[[rule]]\nname = "all"\ngroup = 5\n')  # not a text
        os.kill(os.getpid(), signal.SIGHUP)
        assert imp.reload_requested
        imp.import_file(str(pcap))  # picked up between packets
        assert not imp.reload_requested
        assert any("policy not reloaded" in w and "line 3" in w for w in imp.warnings)
        assert imp.policy.rules[0].action.group == "first"
        policy.write_text('[[rule]]\nname = "all"\ngroup = "second"\n')
        os.kill(os.getpid(), signal.SIGHUP)
        imp.import_file(str(pcap))
        assert imp.policy.rules[0].action.group == "second"
    finally:
        signal.signal(signal.SIGHUP, old)
    imp.finish()
    groups = [e["group"] for e in load_index(tmp_path / "o")]
    # calls keep the policy they started under; the re-imported calls are rewritten, not
    # indexed twice
    assert groups and set(groups) <= {"first", "second"}
