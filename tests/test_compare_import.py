"""Today's import writes the same recordings as the import core before the Recorder rewrite
(bench/compare_import.py, run here on small captures): sample-identical audio, equal
summaries and index lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, SHARED_PCAPS

sys.path.insert(0, str(ROOT / "bench"))
import compare_import  # noqa: E402

SMALL_SHARED = ["sip-rtp-g711.pcap", "rtp-protocol.pcap", "SIP_DTMF2.pcap",
                "SIP-SRTP-Normal_Call_two_parties.pcap", "sip-rtp-g722.pcap",
                "Asterisk_ZFONE_XLITE.pcap"]


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rev = compare_import.DEFAULT_COMMIT
    ok = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}^{{commit}}"],
                        capture_output=True, check=False)
    if ok.returncode != 0:
        pytest.skip(f"the old core's commit {rev} is not in this clone's history")
    return compare_import.old_tree(compare_import.DEFAULT_REV, tmp_path_factory.mktemp("old"))


@pytest.mark.parametrize("variant", ["", "gre", "duplicated-mirror", "ssrc-change",
                                     "nat-media-source"])
def test_generated_mirror_variants(variant: str, old_tree: Path, tmp_path: Path) -> None:
    pcap = tmp_path / "in.pcap"
    extra = ["--mirror", variant] if variant else []
    subprocess.run([sys.executable, "-c", compare_import.RUN, "generate", str(pcap),
                    "--calls", "3", "--duration", "3", "--loss", "0.02", "--jitter-ms", "6",
                    "--rtcp", "--seed", "11", *extra], check=True)
    assert _diffs(pcap, old_tree, tmp_path) == []


@pytest.mark.parametrize("name", SMALL_SHARED)
def test_small_shared_captures(name: str, old_tree: Path, tmp_path: Path) -> None:
    if not (SHARED_PCAPS / name).exists():
        pytest.skip(f"{name}: the shared corpus is not next to the repository")
    assert _diffs(SHARED_PCAPS / name, old_tree, tmp_path) == []


def _diffs(pcap: Path, tree: Path, tmp: Path) -> list[str]:
    old, new = tmp / "old", tmp / "new"
    old.mkdir()
    new.mkdir()
    compare_import.run_import(pcap, old, tree, ["--jobs", "1"])
    compare_import.run_import(pcap, new, None, ["--jobs", "1"])
    assert (new / "index.jsonl").exists()
    return compare_import.compare(old, new)
