from __future__ import annotations

import numpy as np

from writer.timeline import WINDOW_SECONDS, Segmenter, StereoWindow


def collect(rate: int = 8000) -> tuple[StereoWindow, list[np.ndarray]]:
    out: list[np.ndarray] = []
    return StereoWindow(rate, lambda f: out.append(f.copy())), out


def test_window_places_reordered_packets_and_pads_gaps() -> None:
    w, out = collect()
    w.put(0, 160, np.full(160, 2, np.int16))
    w.put(0, 0, np.full(160, 1, np.int16))  # reordered
    w.put(1, 480, np.full(160, 3, np.int16))  # gap 320..480 stays silent
    w.close()
    a = np.concatenate(out)
    assert a.shape == (640, 2)
    assert (a[:160, 0] == 1).all() and (a[160:320, 0] == 2).all() and (a[320:, 0] == 0).all()
    assert (a[480:, 1] == 3).all() and (a[:480, 1] == 0).all()


def test_window_flushes_long_calls_and_counts_late() -> None:
    rate = 8000
    w, out = collect(rate)
    size = rate * WINDOW_SECONDS
    for k in range(3 * size // 160):
        w.put(0, k * 160, np.full(160, 1, np.int16))
    w.put(1, 0, np.full(160, 9, np.int16))  # far too late: its place was written
    w.close()
    a = np.concatenate(out)
    assert len(a) == 3 * size and (a[:, 0] == 1).all()
    assert w.late_samples == [0, 160]
    assert max(len(x) for x in out) <= size


def test_window_long_silence_is_written_in_bounded_pieces() -> None:
    w, out = collect()
    w.put(0, 0, np.ones(160, np.int16))
    w.put(0, 8000 * 100, np.ones(160, np.int16))
    w.close()
    assert sum(len(x) for x in out) == 8000 * 100 + 160
    assert max(len(x) for x in out) <= w.size


def test_segmenter_ssrc_change_and_timestamp_jump() -> None:
    s = Segmenter()
    assert s.place(1, 8000, 10, 1000, 0) == (0, 1000)
    assert s.place(1, 8000, 11, 1160, 160) == (0, 1160)
    assert s.place(1, 8000, 12, 4_000_000_000, 320)[0] == 1  # jump: new mapping
    assert s.place(2, 8000, 500, 5, 480)[0] == 2  # new SSRC
    idx, ext = s.place(2, 8000, 501, 165, 640 + 4000)  # half a second of jitter: same segment
    assert idx == 2 and ext == 165


def test_segmenter_straggler_is_late_not_a_jump() -> None:
    s = Segmenter()
    for k in range(100):
        assert s.place(1, 8000, k, 160 * k, 160 * k)[0] == 0
    assert s.place(1, 8000, 5, 800, 100_000) == (-1, 0)  # 12 s late copy of packet 5
    assert s.place(1, 8000, 100, 16000, 16000) == (0, 16000)


def test_segmenter_wraps_timestamps() -> None:
    s = Segmenter()
    s.place(1, 8000, 65535, 0xFFFFFF60, 0)
    assert s.place(1, 8000, 0, 0, 160) == (0, 0x100000000)


def test_collapse_gaps_of_a_jumping_capture_clock() -> None:
    from writer.timeline import Segment, collapse_gaps

    a = Segment(1, 8000, 0, 0, 0, "PCMU/8000")
    a.max_ext = 8000 * 10
    b = Segment(1, 8000, 8000 * 86400, 0, 0, "PCMU/8000")  # a day later
    b.max_ext = 8000 * 5
    c = Segment(2, 8000, 8000 * 86400 + 8000 * 30, 0, 0, "PCMU/8000")  # 30 s after b: kept
    assert collapse_gaps([c, b, a], 8000) == 1
    assert a.shift == 0 and b.start() - b.shift == 8000 * 11 and c.shift == b.shift


def test_a_packet_over_half_the_window_is_placed_whole() -> None:
    """A flush moves the window at least half its size, but never past the start of the
    packet that caused it (a jumbo payload of more than half the window once crashed)."""
    w, out = collect(rate=8)  # a window of 8 * WINDOW_SECONDS frames
    w.put(0, 10, np.ones(w.size // 2 + 5, np.int16))
    w.put(1, 20, np.full(w.size - 4, 2, np.int16))
    w.close()
    audio = np.concatenate(out)
    assert w.late_samples == [0, 0]
    assert (audio[10:10 + w.size // 2 + 5, 0] == 1).all()
    assert (audio[20:20 + w.size - 4, 1] == 2).all()


def test_fill_writes_what_put_writes() -> None:
    # payloads of three sizes (an odd one is decoded by bytes, not pairs), on and off the
    # 20 ms grid, overlapping, in both laws and both channels, across window edges: fill
    # (the columnar path) equals put one by one
    from writer.g711 import ALAW_DECODE, ULAW_DECODE

    rng = np.random.default_rng(7)
    rate = 8000
    n = 900
    length = rng.choice([160, 80, 81], n).astype(np.int64)
    start = (np.arange(n) * 160 + np.where(rng.random(n) < 0.2,
                                           rng.integers(-200, 200, n), 0)).astype(np.int64)
    start = np.maximum(start, 0)
    channel = rng.integers(0, 2, n).astype(np.int64)
    law = rng.integers(0, 2, n).astype(np.int64)
    src = np.cumsum(np.r_[5, length[:-1] + 3]).astype(np.int64)
    data = rng.integers(0, 256, int(src[-1] + length[-1] + 2)).astype(np.uint8)
    high = int((start + length).max())
    w, out = collect(rate)
    w.fill(start, src, length, channel, law, data, high)
    ref, ref_out = collect(rate)
    for i in range(n):
        table = ALAW_DECODE if law[i] else ULAW_DECODE
        ref.put(int(channel[i]), int(start[i]), table[data[src[i]:src[i] + length[i]]])
    ref.close()
    got, want = np.concatenate(out), np.concatenate(ref_out)
    assert got.shape == want.shape == (high, 2) and (got == want).all()
