"""Retention with legal holds, and erasure, through the commands: the test works out from
the policy itself (its rule's prefix and its periods) which recordings are past their
date, and checks that a run removes exactly those no hold keeps, logs each disposal,
leaves the rest (and the log) verifying, and that an erasure does the same for one call."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from calltap.catalog import SqliteCatalog, call_key, user_part
from calltap.generate import GenOptions, generate
from calltap.verify import verify_calls, verify_log
from tests.helpers import load_index, run_import
from writer import translog
from writer.manifest import new_key_pair
from writer.timefmt import parse_time

POLICY = """
[retention]
default = "5y"
short = "1d"

[[rule]]
name = "uk"
callee = { prefix = "+44" }
retention = "short"
"""
DAY_NS = 86400 * 10**9


def cli(*args: str, cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "calltap.cli", *args, "--config", str(cfg)],
                          capture_output=True, text=True, check=False)


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path, Path, list[dict[str, Any]]]:
    new_key_pair(str(tmp_path / "k"), str(tmp_path / "k.pub"))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'signing_key = "{tmp_path / "k"}"\n')
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY)
    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=7, duration=1.0, varied=True, seed=9))
    run_import([pcap], tmp_path / "out", jobs=1, policy=str(policy),
               signing_key=str(tmp_path / "k"))
    return tmp_path / "out", cfg, policy, load_index(tmp_path / "out")


def expected_due(entries: list[dict[str, Any]], now_ns: int) -> set[str]:
    """From the policy's own terms: callee number starting +44 keeps 1 day, others 5 years
    (365-day years), from the call's start."""
    out = set()
    for e in entries:
        period = DAY_NS if user_part(e["callee"]).startswith("+44") else 5 * 365 * DAY_NS
        if parse_time(e["start"]) + period <= now_ns:  # type: ignore[operator]
            out.add(call_key(e))
    return out


def test_a_run_removes_exactly_the_expired_unheld_and_logs_each(
        site: tuple[Path, Path, Path, list[dict[str, Any]]]) -> None:
    out, cfg, policy, entries = site
    due = expected_due(entries, time.time_ns())
    assert 2 <= len(due) < len(entries)  # some expire, some stay
    held_call, *rest = sorted(due)
    by_search = next(e for e in entries if call_key(e) in rest)
    r = cli("hold", "add", "--out", str(out), "--call", held_call, "--reason", "case 17",
            cfg=cfg)
    assert r.returncode == 0, r.stderr
    hid = r.stdout.strip()
    r = cli("hold", "add", "--out", str(out), "--search",
            f"party={user_part(by_search['caller'])},party_mode=exact", "--reason",
            "case 18", cfg=cfg)
    assert r.returncode == 0, r.stderr
    held = {held_call, call_key(by_search)}

    dry = cli("retention", "run", "--out", str(out), "--policy", str(policy), "--dry-run",
              cfg=cfg)
    assert dry.returncode == 0 and dry.stdout.count("would remove: ") == len(due - held)
    assert all((out / e["audio"]).exists() for e in entries)  # a dry run removes nothing

    run = cli("retention", "run", "--out", str(out), "--policy", str(policy), cfg=cfg)
    assert run.returncode == 0, run.stderr
    removed = {line.split()[1] for line in run.stdout.splitlines()
               if line.startswith("removed: ")}
    assert removed == due - held
    for e in entries:
        there = (out / e["audio"]).exists() and (out / e["summary"]).exists()
        assert there == (call_key(e) not in removed), call_key(e)
    log = [json.loads(x) for x in
           (out / translog.LOG_DIR / "entries.jsonl").read_text().splitlines()]
    disposals = [x for x in log if x["type"] == "disposal"]
    assert {x["call"] for x in disposals} == removed
    assert all(x["retention"] == "short" and x["files"] for x in disposals)
    assert [x["type"] for x in log].count("hold") == 2

    # the catalog forgets them, and a rebuild does not bring them back
    cat = SqliteCatalog.beside(str(out))
    assert all(cat.get(k) is None for k in removed) and cat.get(held_call) is not None
    cat.clear()
    cat.refill(str(out))
    assert cat.count() == len(entries) - len(removed)
    cat.close()
    # what remains verifies, the log too: the removed ones are accounted for
    rep = verify_calls(str(out), str(out.parent / "k.pub"))
    verify_log(str(out), str(out.parent / "k.pub"), rep)
    assert rep.problems == [] and rep.gone == len(removed)

    # released: the next run takes it
    assert cli("hold", "release", hid, "--out", str(out), cfg=cfg).returncode == 0
    again = cli("retention", "run", "--out", str(out), "--policy", str(policy), cfg=cfg)
    assert [x.split()[1] for x in again.stdout.splitlines()
            if x.startswith("removed: ")] == [held_call]
    listed = cli("hold", "list", "--out", str(out), cfg=cfg).stdout
    assert f"{hid}\treleased" in listed and "in force" in listed


def test_erase_removes_one_call_now_and_logs_it(
        site: tuple[Path, Path, Path, list[dict[str, Any]]]) -> None:
    out, cfg, _policy, entries = site
    keep = [e for e in entries if not user_part(e["callee"]).startswith("+44")]
    victim, held = call_key(keep[0]), call_key(keep[1])
    r = cli("erase", victim, "--out", str(out), "--reason", "GDPR art. 17 request 42",
            cfg=cfg)
    assert r.returncode == 0, r.stderr
    assert not list((out / keep[0]["summary"]).parent.glob(victim + ".*"))
    log = [json.loads(x) for x in
           (out / translog.LOG_DIR / "entries.jsonl").read_text().splitlines()]
    assert log[-1]["type"] == "erasure" and log[-1]["call"] == victim
    assert log[-1]["reason"] == "GDPR art. 17 request 42"
    again = cli("erase", victim, "--out", str(out), "--reason", "again", cfg=cfg)
    assert again.returncode == 1 and "already gone" in again.stderr
    cli("hold", "add", "--out", str(out), "--call", held, "--reason", "case 9", cfg=cfg)
    refused = cli("erase", held, "--out", str(out), "--reason", "x", cfg=cfg)
    assert refused.returncode == 1 and "legal hold" in refused.stderr
    assert (out / keep[1]["audio"]).exists()
    rep = verify_calls(str(out), str(out.parent / "k.pub"))
    verify_log(str(out), str(out.parent / "k.pub"), rep)
    assert rep.problems == [] and rep.gone == 1


def test_a_policy_with_an_unknown_class_or_period_is_refused(tmp_path: Path) -> None:
    from calltap.policyfile import PolicyError, load_policy

    p = tmp_path / "p.toml"
    p.write_text('[retention]\ndefault = "5 years"\n')
    with pytest.raises(PolicyError, match="line 2"):
        load_policy(str(p))
    p.write_text('[retention]\ndefault = "1y"\n[[rule]]\nname = "a"\nretention = "x"\n')
    with pytest.raises(PolicyError, match="retention class 'x'"):
        load_policy(str(p))
    p.write_text('[retention]\ndefault = "90d"\nlong = "7y"\n')
    assert dict(load_policy(str(p)).retention) == {"default": 90 * 86400,
                                                   "long": 7 * 365 * 86400}
