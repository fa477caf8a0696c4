"""A byte buffer (a mapped capture, a header copy) seen as a word or a row starting at
every byte: overlapping views, no copy. Indexing one with offsets reads a whole field or a
whole header per packet, where an index array per byte took a cache miss per byte."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]


def words(data: U8, dtype: str) -> npt.NDArray[np.generic]:
    """``data`` as a word of ``dtype`` (byte order included) at every byte offset."""
    width = np.dtype(dtype).itemsize
    return np.ndarray(shape=(max(len(data) - width + 1, 0),), dtype=dtype, buffer=data,
                      strides=(1,))


def rows(data: U8, width: int) -> U8:
    """``data`` as a row of ``width`` bytes at every byte offset: ``rows(data, w)[off]``
    copies each packet's ``w`` bytes at ``off`` whole."""
    return np.ndarray(shape=(max(len(data) - width + 1, 0), width), dtype=np.uint8,
                      buffer=data, strides=(1, 1))
