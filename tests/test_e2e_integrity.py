"""Capture loss against network loss: the receiver's RTCP is the witness."""

from __future__ import annotations

from pathlib import Path

import pytest

from calltap.generate import GenOptions, generate
from tests.helpers import load_index, load_summary, run_import


def verdicts(tmp_path: Path, **opts: object) -> list[str]:
    pcap = tmp_path / "c.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=20.0, seed=41, rtcp=True, **opts))
    run_import([pcap], tmp_path / "o")
    (e,) = load_index(tmp_path / "o")
    return [d["capture_integrity"]["verdict"]
            for d in load_summary(tmp_path / "o", e)["directions"]]


@pytest.mark.parametrize("opts,expected", [
    ({}, ["none", "none"]),
    ({"capture_loss": 0.03}, ["capture-loss", "capture-loss"]),
    ({"loss": 0.03}, ["network-loss", "network-loss"]),
    ({"missing_side": 1}, ["none", "asymmetric-mirror"]),
])
def test_verdicts(opts: dict[str, object], expected: list[str], tmp_path: Path) -> None:
    assert verdicts(tmp_path, **opts) == expected
