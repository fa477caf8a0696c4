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


def test_generated_stream_statistics_equal_tsharks(tmp_path: Path) -> None:
    """Loss, reordering, duplicates and jitter: all eight columns agree with tshark's."""
    from tests.test_e2e_shared import calltap_rtp_streams, same_columns, tshark_rtp_streams

    pcap = tmp_path / "messy.pcap"
    generate(str(pcap), GenOptions(calls=4, duration=8.0, loss=0.03, reorder=0.03,
                                   duplicate=0.02, jitter_ms=8.0, seed=5,
                                   codecs=("PCMU", "PCMA")))
    theirs = tshark_rtp_streams(pcap)
    assert len(theirs) == 8
    run_import([pcap], tmp_path / "raw", dedup_window=0.0)
    mine = calltap_rtp_streams(tmp_path / "raw")
    for key, cols in theirs.items():
        assert same_columns(mine[key], cols), (key, mine[key], cols)
    # By default a byte-identical copy within 100 ms is taken for a mirror-port duplicate
    # and dropped at capture, so "received" no longer counts it; tshark still does.
    run_import([pcap], tmp_path / "dedup")
    deduped = calltap_rtp_streams(tmp_path / "dedup")
    assert sum(c[0] for c in deduped.values()) < sum(c[0] for c in theirs.values())
    assert all(c[1] >= 0 for c in deduped.values())


def test_adaptive_jitter_buffer_hears_less_loss_under_heavy_jitter(tmp_path: Path) -> None:
    pcap = tmp_path / "jittery.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=20.0, jitter_ms=80.0, seed=8,
                                   codecs=("PCMU",)))
    heard = {}
    for mode in ("fixed", "adaptive"):
        run_import([pcap], tmp_path / mode, jitter_buffer=mode)
        (e,) = load_index(tmp_path / mode)
        q = load_summary(tmp_path / mode, e)["directions"][0]["quality"]
        assert q["jitter_buffer"] == mode
        heard[mode] = (q["loss_heard_pct"], q["jitter_buffer_ms"], q["mos"])
    assert heard["fixed"][1] == 60.0
    # the adaptive buffer grows past 60 ms, so it drops fewer late packets
    assert heard["adaptive"][0] < heard["fixed"][0] and heard["adaptive"][1] > 60.0


def test_far_end_cname_and_voip_metrics_reach_the_summary(tmp_path: Path) -> None:
    import subprocess

    pcap = tmp_path / "xr.pcap"
    generate(str(pcap), GenOptions(calls=1, duration=12.0, loss=0.04, seed=3, rtcp=True,
                                   codecs=("PCMU",)))
    # tshark, independently, reads the same VoIP-metrics loss rates from the XR blocks
    # tshark decodes the XR blocks independently: MOS-LQ and jitter-buffer sizes
    fields = ("moslq", "jbnominal", "jbmax", "jbabsmax")
    cmd = ["tshark", "-n", "-r", str(pcap), "-Y", "rtcp.xr.voipmetrics.moslq", "-T", "fields"]
    for f in fields:
        cmd += ["-e", f"rtcp.xr.voipmetrics.{f}"]
    rows = set(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split("\n"))
    rows.discard("")
    assert len(rows) == 1
    run_import([pcap], tmp_path / "o")
    (e,) = load_index(tmp_path / "o")
    summary = load_summary(tmp_path / "o", e)
    for d, name in zip(summary["directions"], ("caller0", "callee0"), strict=True):
        (s,) = d["ssrcs"]
        assert s["cname"] == f"{name}@calltap.test"
        (xr,) = d["far_end_voip_metrics"].values()
        mos_lq, *jb = next(iter(rows)).split("\t")
        assert xr["mos_lq"] == float(mos_lq) and xr["jb_adaptive"] is True
        assert [xr["jb_nominal_ms"], xr["jb_max_ms"], xr["jb_abs_max_ms"]] == [int(v) for v in jb]
        # the receiver's loss rate so far: near the 4% the network lost
        assert 1.0 < xr["loss_pct"] < 7.0
