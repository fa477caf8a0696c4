from __future__ import annotations

from writer.stats import StreamStats

MS = 1_000_000


def feed(seqs: list[int], arrivals_ms: list[float] | None = None) -> StreamStats:
    s = StreamStats(0xABC, 8000)
    for i, seq in enumerate(seqs):
        at = arrivals_ms[i] if arrivals_ms else (seq - seqs[0]) * 20.0
        s.add(seq & 0xFFFF, ((seq - seqs[0]) * 160) & 0xFFFFFFFF, int(at * MS), 0)
    return s


def test_clean_stream() -> None:
    s = feed(list(range(100)))
    assert (s.packets, s.expected, s.lost, s.duplicates, s.out_of_order) == (100, 100, 0, 0, 0)
    assert s.jitter == 0.0


def test_loss_duplicates_reorder_across_wrap() -> None:
    seqs = [65530, 65531, 65533, 65532, 65532, 65534, 2]  # 65535, 0, 1 lost
    s = feed(seqs)
    assert s.packets == 6 and s.duplicates == 1 and s.out_of_order == 1
    assert s.expected == 9 and s.lost == 3


def test_jitter_rfc3550() -> None:
    # one packet 10 ms late: D = 80 timestamp units; J = 80/16 = 5 units, then decays
    arrivals = [0.0, 20.0, 50.0, 60.0]
    s = feed([0, 1, 2, 3], arrivals)
    j1 = 0.0
    j1 += (0 - j1) / 16
    j2 = j1 + (80 - j1) / 16
    j3 = j2 + (80 - j2) / 16
    assert abs(s.jitter - j3) < 1e-9
    out = s.to_json()
    assert out["jitter_ms_max"] == round(j3 / 8, 3)


def test_jitter_buffer_discards_and_worst_second() -> None:
    s = StreamStats(1, 8000, jitter_buffer_ms=60.0)
    for k in range(200):  # 4 s of 20 ms packets; 2nd second loses 5, one packet 100 ms late
        if 50 <= k < 55:
            continue
        late = 100 if k == 120 else 0
        s.add(k, k * 160, (k * 20 + late) * MS, 0)
    out = s.to_json()
    assert out["jitter_buffer_discards"] == 1
    assert s.worst_second_loss == 10.0  # 5 of 50 in one second
