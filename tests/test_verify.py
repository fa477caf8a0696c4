"""Signed manifests and the append-only log, end to end: an import with a signing key
verifies clean; one byte flipped in a WAV, an XML, a manifest or a log entry, a recording
deleted, two log entries swapped: `calltap verify` names each; a writer without the key
writes no manifest; an auditor's inclusion proof checks with the RFC 9162 code of
test_merkle against the signed checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from calltap.generate import GenOptions, generate
from calltap.verify import proof_for, verify_calls, verify_log
from tests.helpers import load_index, run_import
from tests.test_merkle import mth, path
from writer import translog
from writer.manifest import new_key_pair, verify
from writer.merkle import leaf_hash, verify_inclusion


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("signed")
    new_key_pair(str(d / "signing.key"), str(d / "signing.pub"))
    pcap = d / "g.pcap"
    generate(str(pcap), GenOptions(calls=4, duration=2.0, seed=3))
    run_import([pcap], d / "out", jobs=1, signing_key=str(d / "signing.key"))
    return d / "out", d / "signing.pub"


def copy(signed: tuple[Path, Path], tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "out"
    shutil.copytree(signed[0], out)
    return out, str(signed[1])


def problems(out: Path, pub: str) -> list[str]:
    rep = verify_calls(str(out), pub)
    verify_log(str(out), pub, rep)
    return rep.problems


def flip(p: Path, at: int) -> None:
    b = bytearray(p.read_bytes())
    b[at] ^= 0x01
    p.write_bytes(bytes(b))


def test_an_untouched_set_verifies(signed: tuple[Path, Path]) -> None:
    out, pub = signed
    rep = verify_calls(str(out), str(pub))
    verify_log(str(out), str(pub), rep)
    assert rep.problems == []
    assert rep.calls == 4 and rep.files == 4 * 5 and rep.entries == 4
    assert rep.checkpoints == 1 and rep.uncovered == 0
    e = load_index(out)[0]
    m = verify((out / e["manifest"]).read_bytes(), str(pub))
    assert {f["name"].rsplit(".", 1)[-1] for f in m["files"]} >= {"wav", "xml", "json",
                                                                   "pcap"}
    assert m["call"]["call_id"] == e["call_id"] and m["recorder"]["software"] == "calltap"


@pytest.mark.parametrize("what", ["wav", "xml", "manifest"])
def test_a_flipped_byte_is_named(signed: tuple[Path, Path], tmp_path: Path,
                                 what: str) -> None:
    out, pub = copy(signed, tmp_path)
    e = load_index(out)[1]
    target = {"wav": e["audio"], "xml": e["metadata"], "manifest": e["manifest"]}[what]
    flip(out / target, 100)
    got = problems(out, pub)
    key = Path(e["summary"]).stem
    if what == "manifest":
        assert any(g.startswith(f"{key}: {target}: signature does not verify") for g in got)
        assert any("the manifest on disk is not the one logged" in g for g in got)
    else:
        assert got == [f"{key}: {target}: altered (its SHA-256 is not the signed one)"]


def test_a_rewritten_log_entry_is_named(signed: tuple[Path, Path], tmp_path: Path) -> None:
    out, pub = copy(signed, tmp_path)
    log = out / translog.LOG_DIR / "entries.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"sha256":"', b'"sha256":"0', 1)[:-2] + b'"}'
    log.write_bytes(b"\n".join(lines))
    got = problems(out, pub)
    assert "checkpoint 0: log entries 0-3 do not hash to its signed root: one was " \
           "removed, reordered or rewritten" in got
    assert any(g.startswith("log entry 2: ") and "not the one logged" in g for g in got)


def test_swapped_log_entries_are_named(signed: tuple[Path, Path], tmp_path: Path) -> None:
    out, pub = copy(signed, tmp_path)
    log = out / translog.LOG_DIR / "entries.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[0], lines[1] = lines[1], lines[0]
    log.write_bytes(b"\n".join(lines))
    got = problems(out, pub)
    assert "log entry 0: says it is entry 1: entries removed or reordered" in got
    assert "log entry 1: says it is entry 0: entries removed or reordered" in got
    assert any(g.startswith("checkpoint 0: log entries 0-3 do not hash") for g in got)


def test_a_removed_log_entry_is_named(signed: tuple[Path, Path], tmp_path: Path) -> None:
    out, pub = copy(signed, tmp_path)
    log = out / translog.LOG_DIR / "entries.jsonl"
    lines = log.read_bytes().split(b"\n")
    del lines[3]
    log.write_bytes(b"\n".join(lines))
    got = problems(out, pub)
    assert "checkpoint 0: signed 4 entries, the log has 3: entries removed" in got


def test_a_deleted_recording_is_named(signed: tuple[Path, Path], tmp_path: Path) -> None:
    out, pub = copy(signed, tmp_path)
    e = load_index(out)[2]
    key = Path(e["summary"]).stem
    for f in (out / e["summary"]).parent.glob(key + ".*"):
        f.unlink()
    # and its index line too: the log still knows it was written
    index = out / "index.jsonl"
    index.write_text("".join(x for x in index.read_text().splitlines(keepends=True)
                             if key not in x))
    got = problems(out, pub)
    assert any(g.startswith("log entry ") and f"{key}: its manifest is gone" in g
               for g in got), got


def test_the_command_reports_and_fails(signed: tuple[Path, Path], tmp_path: Path) -> None:
    out, pub = copy(signed, tmp_path)
    run = [sys.executable, "-m", "calltap.cli", "verify", str(out), "--key", pub, "--log"]
    ok = subprocess.run(run, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout == "" and "ok: 4 calls, 20 files" in ok.stderr
    e = load_index(out)[0]
    flip(out / e["audio"], 5000)
    bad = subprocess.run(run, capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and bad.stdout.strip() == (
        f"{Path(e['summary']).stem}: {e['audio']}: altered (its SHA-256 is not the signed "
        "one)")


def test_an_inclusion_proof_checks_independently(signed: tuple[Path, Path]) -> None:
    out, pub = signed
    key = Path(load_index(out)[1]["summary"]).stem
    p = proof_for(str(out), str(pub), key)
    cp = verify(p["checkpoint"].encode(), str(pub))  # the signed tree head
    assert cp["root"] == p["root"] and cp["size"] == p["tree_size"]
    lines = (out / translog.LOG_DIR / "entries.jsonl").read_bytes().split(b"\n")[:-1]
    assert bytes.fromhex(p["root"]) == mth(lines)
    assert [bytes.fromhex(h) for h in p["inclusion_path"]] == path(p["leaf_index"], lines)
    verify_inclusion(p["leaf_index"], p["tree_size"], leaf_hash(p["entry"].encode()),
                     [bytes.fromhex(h) for h in p["inclusion_path"]], bytes.fromhex(p["root"]))
    assert json.loads(p["entry"])["call"] == key


def test_without_a_key_nothing_is_signed(tmp_path: Path) -> None:
    pcap = tmp_path / "g.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=1.0, seed=3))
    run_import([pcap], tmp_path / "out", jobs=1)
    assert "manifest" not in load_index(tmp_path / "out")[0]
    assert not (tmp_path / "out" / translog.LOG_DIR).exists()


def test_a_checkpoint_every_so_many_entries_and_consistency(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(translog, "CHECKPOINT_EVERY", 3)
    new_key_pair(str(tmp_path / "k"), str(tmp_path / "k.pub"))
    out = tmp_path / "out"
    out.mkdir()
    for i in range(8):
        translog.append(str(out), {"type": "note", "n": i}, str(tmp_path / "k"), "t", 0.0,
                        durable=False)
    lines, tokens = (out / translog.LOG_DIR / "entries.jsonl").read_bytes(), \
        (out / translog.LOG_DIR / "checkpoints.jsonl").read_bytes().split()
    assert len(tokens) == 2  # after 3 and 6 entries
    assert translog.checkpoint(str(out), str(tmp_path / "k"), "t", 0.0, durable=False)
    assert not translog.checkpoint(str(out), str(tmp_path / "k"), "t", 0.0, durable=False)
    rep = verify_log(str(out), str(tmp_path / "k.pub"))
    assert rep.problems == [] and rep.checkpoints == 3 and rep.entries == 8
    assert len(lines.split(b"\n")) == 9
    # a state file lost with the process: rebuilt from the entries, the tree goes on
    (out / translog.LOG_DIR / "state.json").unlink()
    translog.append(str(out), {"type": "note", "n": 8}, str(tmp_path / "k"), "t", 0.0,
                    durable=False)
    assert verify_log(str(out), str(tmp_path / "k.pub")).problems == []
