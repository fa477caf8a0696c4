from __future__ import annotations

import random

import numpy as np
import pytest

from tests.stats_reference import StreamStats as ReferenceStats
from writer.jitterbuf import JitterBuffer
from writer.stats import StreamStats

MS = 1_000_000


def feed(seqs: list[int], arrivals_ms: list[float] | None = None) -> StreamStats:
    s = StreamStats(0xABC, 8000)
    for i, seq in enumerate(seqs):
        at = arrivals_ms[i] if arrivals_ms else (seq - seqs[0]) * 20.0
        s.add(seq & 0xFFFF, ((seq - seqs[0]) * 160) & 0xFFFFFFFF, int(at * MS), 0)
    s.flush()
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


def test_jitter_rfc3550_in_ms() -> None:
    # packet 2 is 10 ms late: D = 10 ms, J = J + (|D| - J) / 16 (RFC 3550 A.8), then the next
    # packet is 10 ms early against packet 2
    s = feed([0, 1, 2, 3], [0.0, 20.0, 50.0, 60.0])
    j = 0.0
    for d in (0.0, 10.0, 10.0):
        j += (d - j) / 16
    assert abs(s.jitter - j) < 1e-9
    out = s.to_json()
    assert out["jitter_ms"]["max"] == round(j, 3)
    # the mean covers the three deltas: (j1 + j2 + j3) / 3
    js = [0.0, 10 / 16, 10 / 16 + (10 - 10 / 16) / 16]
    assert out["jitter_ms"]["mean"] == round(sum(js) / 3, 3)
    assert out["delta_ms"] == {"min": 10.0, "mean": 20.0, "max": 30.0}


def test_irregular_packets_stay_out_of_the_delta_and_jitter_columns() -> None:
    s = StreamStats(7, 8000)
    s.add(0, 0, 0, 0)
    s.add(1, 160, 20 * MS, 0)
    s.add(2, 8000, 500 * MS, 0, marker=True)  # a talkspurt after silence suppression
    s.add(3, 8160, 520 * MS, 13)  # comfort noise
    s.add(4, 8320, 540 * MS, 0)  # follows comfort noise
    s.add(5, 8480, 560 * MS, 0)
    out = s.to_json()
    # only packets 1 and 5 are regular; the mean still divides by the deltas seen (as
    # Wireshark's running mean does)
    assert out["delta_ms"]["max"] == 20.0 and out["delta_ms"]["min"] == 20.0
    assert s.markers == 1 and out["payload_types"] == [0, 13]


def test_duplicates_count_as_received_and_in_cumulative_lost() -> None:
    s = feed([0, 1, 1, 2, 4])
    out = s.to_json()
    assert (out["packets"], out["received"], out["lost"], out["cumulative_lost"]) == (4, 5, 1, 0)
    assert out["sequence_errors"] == 2  # the repeat of 1 and the jump over 3


def test_clock_skew_and_drift() -> None:
    # the sender's clock runs 0.1% fast: 160 ticks every 19.98 ms of capture time
    s = StreamStats(9, 8000)
    for k in range(3000):
        s.add(k & 0xFFFF, k * 160, int(k * 19.98 * MS), 0)
    s.flush()
    assert abs(s.clock_drift_ppm - 1001.0) < 1.0  # 20 / 19.98 - 1
    assert abs(s.skew - 2999 * 0.02) < 1e-6
    assert s.to_json()["clock_skew_ms_max"] == round(s.skew, 3)


def test_jitter_buffer_discards_and_worst_second() -> None:
    s = StreamStats(1, 8000, JitterBuffer("fixed", 60.0))
    for k in range(200):  # 4 s of 20 ms packets; 2nd second loses 5, one packet 100 ms late
        if 50 <= k < 55:
            continue
        late = 100 if k == 120 else 0
        s.add(k, k * 160, (k * 20 + late) * MS, 0)
    out = s.to_json()
    assert out["jitter_buffer_discards"] == 1
    assert s.worst_second_loss == 10.0  # 5 of 50 in one second


def random_stream(rng: random.Random, n: int) -> list[tuple[int, int, int, int, bool, int, int]]:
    """Packets with loss, reordering, duplicates, jitter, markers, comfort noise, RFC 4733
    events, a timestamp restart, and sequence and timestamp wraps."""
    seq0, ts0 = rng.randrange(65536), rng.randrange(1 << 32)
    out = []
    t = 0
    for k in range(n):
        if rng.random() < 0.03:
            continue
        seq, rts = (seq0 + k) & 0xFFFF, (ts0 + k * 160) & 0xFFFFFFFF
        if k > n // 2:
            rts = (rts + 7_000_000) & 0xFFFFFFFF  # the sender restarted its timestamps
        pt, clock = 0, 8000
        roll = rng.random()
        if roll < 0.03:
            pt = 13
        elif roll < 0.06:
            pt, clock, rts = 101, 0, (ts0 + (k - k % 5) * 160) & 0xFFFFFFFF
        marker = rng.random() < 0.02
        arrival = k * 20_000_000 + rng.randrange(15_000_000)
        if rng.random() < 0.03:
            arrival += 45_000_000  # overtaken by the next packets
        out.append((seq, rts, arrival, pt, marker, clock, 172))
        if rng.random() < 0.02:
            out.append((seq, rts, arrival + 2_000_000, pt, marker, clock, 172))
        t = arrival
    del t
    out.sort(key=lambda p: p[2])
    return out


@pytest.mark.parametrize("seed", range(12))
def test_batches_equal_the_per_packet_reference(seed: int) -> None:
    """The numpy batches give what the plain per-packet definition gives, however the
    packets are split into batches, and add_batch gives what add gives."""
    rng = random.Random(seed)
    packets = random_stream(rng, rng.choice((30, 900, 9000)))
    ref = ReferenceStats(5, 8000)
    one = StreamStats(5, 8000)
    for p in packets:
        assert ref.add(*p) == one.add(*p)
    cols = [np.array(c, np.int64) for c in zip(*packets, strict=True)]
    whole = StreamStats(5, 8000)
    whole.add_batch(cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6])
    want = ref.to_json()
    for got in (one.to_json(), whole.to_json()):
        for k, v in want.items():
            if isinstance(v, float):
                assert got[k] == pytest.approx(v, abs=1e-3), k
            else:
                assert got[k] == v, k
