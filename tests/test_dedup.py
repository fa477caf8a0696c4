from __future__ import annotations

from pathlib import Path

import pytest

from capture.dedup import Deduplicator

MS = 1_000_000


def test_copies_within_the_window_are_dropped() -> None:
    d = Deduplicator(window_ns=100 * MS)
    assert not d.seen(0, 1) and d.seen(1 * MS, 1)
    assert not d.seen(1 * MS, 2)
    assert not d.seen(600 * MS, 1)  # a SIP retransmission 500 ms later is kept
    assert d.duplicates == 1


def test_bounded() -> None:
    d = Deduplicator(window_ns=10**12, max_entries=100)
    for k in range(1000):
        d.seen(k, k)
    assert len(d._seen) <= 100 and len(d._times) == len(d._keys) <= 100
    assert not d.seen(2000, 0)  # forgotten when the table overflowed: kept, never wrongly dropped


@pytest.mark.parametrize("collide", [False, True])
def test_columnar_duplicates_match_the_deduplicator(tmp_path: Path, collide: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On an indexed capture, the columnar verdicts equal the Deduplicator's packet by
    packet, also when the capture comes in windows (the tail carries over), and when
    every key mixes to one value (the exact sort a collision falls back to)."""
    import random

    import numpy as np

    import capture.dedup
    from calltap.generate import GenOptions, generate
    from capture.dedup import duplicates
    from capture.index import index_windows
    from capture.pcapfile import open_capture
    from capture.vector import decode_udp, rtp_like
    from tests.helpers import pcap_bytes

    clean = tmp_path / "c.pcap"
    generate(str(clean), GenOptions(calls=2, duration=2.0, seed=3))
    rng = random.Random(5)
    frames: list[tuple[int, bytes]] = []
    for t, _l, f in open_capture(str(clean)):
        frames.append((t, f))
        if rng.random() < 0.2:  # a second mirror's copy, 0 to 150 ms later
            frames.append((t + rng.randrange(150_000_000), f))
    frames.sort(key=lambda x: x[0])
    pcap = tmp_path / "d.pcap"
    pcap.write_bytes(pcap_bytes(frames))
    d = Deduplicator(100_000_000)
    want = []
    for window in index_windows(str(pcap), 1 << 30):
        udp = decode_udp(window)
        fast = rtp_like(window, udp)
        for i in range(len(window)):
            if fast[i]:
                o, n = int(udp.payload[i]), int(udp.size[i])
                key = hash((int(udp.src[i]), int(udp.dst[i]), int(udp.sport[i]),
                            int(udp.dport[i]), window.data[o:o + n].tobytes()))
                want.append(d.seen(int(window.ts_ns[i]), key))
    if collide:
        monkeypatch.setattr(capture.dedup, "_mix", lambda cols: np.zeros(len(cols[0]),
                                                                          np.uint64))
    for size in (1 << 30, 157):
        got: list[bool] = []
        tail: dict[tuple[int, ...], int] = {}
        for window in index_windows(str(pcap), size):
            udp = decode_udp(window)
            fast = rtp_like(window, udp)
            dup, tail = duplicates(window, udp, fast, 100_000_000, tail)
            got += dup[fast].tolist()
        assert got == want and sum(want) > 50

