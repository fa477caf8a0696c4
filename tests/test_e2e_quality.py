"""Listening quality from generated calls: a clean G.711 call rates 4.3-4.5 and the MOS
falls as loss grows."""

from __future__ import annotations

from pathlib import Path

from calltap.generate import GenOptions, generate
from tests.helpers import load_index, load_summary, run_import
from writer.mos import mos, r_factor


def test_mos_falls_with_loss(tmp_path: Path) -> None:
    scores = []
    for n, loss in enumerate((0.0, 0.01, 0.03, 0.05, 0.10)):
        pcap = tmp_path / f"loss{n}.pcap"
        generate(str(pcap), GenOptions(calls=1, duration=20.0, loss=loss, jitter_ms=5.0,
                                       seed=31, codecs=("PCMU",)))
        run_import([pcap], tmp_path / f"o{n}")
        (e,) = load_index(tmp_path / f"o{n}")
        quality = load_summary(tmp_path / f"o{n}", e)["directions"][0]["quality"]
        # the figure equals the E-model computed here from the loss the summary reports
        assert quality["mos"] == round(mos(r_factor("PCMU/8000", quality["loss_heard_pct"])), 2)
        assert quality["worst_second_mos"] <= quality["mos"]
        scores.append(e["mos"][0])
    assert 4.3 <= scores[0] <= 4.5
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 5, scores
