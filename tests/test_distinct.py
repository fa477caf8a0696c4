from __future__ import annotations

import numpy as np

from capture.distinct import present, unique_inverse


def test_present_is_numpys_unique() -> None:
    rng = np.random.default_rng(7)
    for n, high in ((0, 5), (1, 5), (50, 1), (1000, 3), (1000, 128), (5000, 70_000)):
        values = rng.integers(0, high, n)
        assert present(values, 128) == np.unique(values).tolist()
        assert present(values) == np.unique(values).tolist()


def test_unique_inverse_is_numpys_unique() -> None:
    rng = np.random.default_rng(8)
    cases = [np.zeros(0, np.int64), np.array([5], np.int64), np.full(300, -7, np.int64),
             rng.integers(-(1 << 40), 1 << 40, 500), rng.integers(0, 4, 500)]
    for values in cases:
        uniq, first, inverse = unique_inverse(values)
        want = np.unique(values, return_index=True, return_inverse=True)
        assert uniq.tolist() == want[0].tolist()
        assert first.tolist() == want[1].tolist()
        assert inverse.tolist() == want[2].tolist()
        assert (uniq[inverse] == values).all()
