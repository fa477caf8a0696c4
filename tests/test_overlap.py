from __future__ import annotations

import numpy as np

from capture import overlap


def test_a_word_and_a_row_at_every_byte() -> None:
    data = np.random.default_rng(2).integers(0, 256, 40, dtype=np.uint8)
    for dtype in (">u2", "<u4", ">u8"):
        width = np.dtype(dtype).itemsize
        got = overlap.words(data, dtype)
        assert len(got) == len(data) - width + 1
        for at in range(len(got)):
            assert int(got[at]) == int(np.frombuffer(data[at:at + width].tobytes(), dtype)[0])
    for width in (1, 12, 40):
        got = overlap.rows(data, width)
        assert len(got) == len(data) - width + 1
        assert all((got[at] == data[at:at + width]).all() for at in range(len(got)))


def test_a_buffer_shorter_than_one_word_or_row_has_none() -> None:
    data = np.arange(3, dtype=np.uint8)
    assert len(overlap.words(data, ">u4")) == 0
    assert overlap.rows(data, 12).shape == (0, 12)
