"""Distinct values of the small integer columns the batch paths group by (payload types,
router slots, stream keys), without ``np.unique``: for these few values it costs ten
times what a count or an all-equal check does, and the writer asks it many times a call."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


def present(values: npt.NDArray[np.integer], bound: int = 0) -> list[int]:
    """The distinct values of a column of small non-negative integers, ascending (as
    ``np.unique(values).tolist()``); ``bound`` is one past the largest possible value."""
    if not len(values):
        return []
    return np.flatnonzero(np.bincount(values, minlength=bound)).tolist()


def unique_inverse(values: I64) -> tuple[I64, I64, I64]:
    """``np.unique(values, return_index=True, return_inverse=True)``, at once when every
    value is the same (one stream, one bucket: the usual case)."""
    if len(values) and (values == values[0]).all():
        return values[:1].copy(), np.zeros(1, np.int64), np.zeros(len(values), np.int64)
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    return uniq, first.astype(np.int64), inverse.astype(np.int64).reshape(-1)
