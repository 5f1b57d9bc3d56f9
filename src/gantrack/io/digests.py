"""Content digests of arrays: the data a run trained on, the weights that scored it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def arrays_sha256(arrays: Iterable[np.ndarray]) -> str:
    """sha256 hex of the dtypes, shapes and bytes of arrays, in order. The shape goes in too:
    the same bytes reshaped are different data."""
    h = hashlib.sha256()
    for array in arrays:
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()
