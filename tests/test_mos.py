from __future__ import annotations

from writer.mos import delay_impairment, mos, r_factor


def test_clean_g711_is_toll_quality() -> None:
    r = r_factor("PCMU/8000", 0.0)
    assert r == 93.2 and 4.3 <= mos(r) <= 4.5


def test_worked_example_g711_two_percent_random_loss() -> None:
    # Worked by hand from G.107: Ie,eff = 0 + 95 * 2 / (2 / 1 + 25.1) = 7.0111;
    # R = 93.2 - 7.0111 = 86.1889; MOS = 1 + 3.0166 + 86.1889 * 26.1889 * 13.8111 * 7e-6
    # = 1 + 3.0166 + 0.2182 = 4.2348
    r = r_factor("PCMA/8000", 2.0)
    assert abs(r - 86.1889) < 1e-3
    assert abs(mos(r) - 4.2348) < 1e-3


def test_monotonic_in_loss_and_codec_impairment_counts() -> None:
    values = [mos(r_factor("PCMU/8000", p)) for p in (0, 1, 3, 5, 10)]
    assert values == sorted(values, reverse=True) and len(set(values)) == 5
    assert mos(r_factor("G729/8000", 0)) < mos(r_factor("PCMU/8000", 0))
    assert mos(r_factor("PCMU/8000", 3, burst_ratio=2.0)) < mos(r_factor("PCMU/8000", 3))


def test_delay_impairment() -> None:
    assert delay_impairment(80) == 0.0
    assert 0 < delay_impairment(200) < delay_impairment(400)
    assert mos(r_factor("PCMU/8000", 0, one_way_ms=400)) < mos(r_factor("PCMU/8000", 0))
    assert mos(-5) == 1.0 and mos(120) == 4.5
