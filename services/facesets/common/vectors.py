"""Small numeric shapes the services share: unit-length rows, unit means and box overlap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_TINY = 1e-12  # a norm below this is treated as zero length


def unit_rows(vectors: np.ndarray, dtype: type[np.floating] = np.float32) -> np.ndarray:
    """Each row (or the one vector) scaled to unit length, in `dtype`; all-zero rows stay zero."""
    array = np.asarray(vectors, dtype=dtype)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.maximum(norms, _TINY)


def unit_mean(vectors: np.ndarray) -> np.ndarray:
    """The mean of the rows, scaled to unit length (a zero mean stays zero): a centroid that
    cosine comparisons can use."""
    mean = np.asarray(vectors).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


def iou(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when both are empty."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
