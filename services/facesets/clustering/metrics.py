"""Clustering quality against known identities: pairwise and BCubed precision / recall / F.

All measures work from the contingency table of (true, predicted) label pairs, so they cost
O(n log n), never O(n^2). Negative predicted labels (faces left unclustered: noise,
rejected outliers) count as clusters of one each, as they would be presented to a person.
"""

from __future__ import annotations

import numpy as np


def _check_pair(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(labels_true)
    pred = np.asarray(labels_pred)
    if true.ndim != 1 or pred.ndim != 1:
        raise ValueError("labels must be 1-d arrays")
    if true.shape != pred.shape:
        raise ValueError(f"label arrays differ in length: {true.shape[0]} vs {pred.shape[0]}")
    return true, pred


def _dense_ids(labels: np.ndarray) -> np.ndarray:
    """Labels as 0..k-1; each negative (unclustered) label becomes a cluster of its own."""
    ids = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    if np.issubdtype(labels.dtype, np.number):
        loose = np.flatnonzero(labels < 0)
        if loose.size:
            ids[loose] = ids.max() + 1 + np.arange(loose.size)
    return ids


def _contingency(
    labels_true: np.ndarray, labels_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n_ij per non-empty cell, true id of each cell, pred id of each cell, true sizes,
    pred sizes)."""
    true = _dense_ids(labels_true)
    pred = _dense_ids(labels_pred)
    width = int(pred.max()) + 1 if pred.size else 1
    cells, counts = np.unique(true * width + pred, return_counts=True)
    return (
        counts.astype(np.float64),
        cells // width,
        cells % width,
        np.bincount(true).astype(np.float64),
        np.bincount(pred).astype(np.float64),
    )


def _f(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def pairwise_prf(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F over pairs of faces put in the same cluster.

    Precision: of the pairs sharing a predicted cluster, the share that are one identity;
    recall: of the pairs sharing an identity, the share that share a predicted cluster. With
    no predicted (or no true) pairs at all the corresponding measure is 1.0 by convention.
    """
    true, pred = _check_pair(labels_true, labels_pred)
    if true.size == 0:
        return 1.0, 1.0, 1.0
    n_ij, _, _, a, b = _contingency(true, pred)
    together = float((n_ij * (n_ij - 1)).sum() / 2)
    pred_pairs = float((b * (b - 1)).sum() / 2)
    true_pairs = float((a * (a - 1)).sum() / 2)
    precision = together / pred_pairs if pred_pairs else 1.0
    recall = together / true_pairs if true_pairs else 1.0
    return precision, recall, _f(precision, recall)


def bcubed_prf(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[float, float, float]:
    """BCubed precision, recall and F (Bagga and Baldwin), averaged over faces.

    A face's precision is the share of its predicted cluster with its identity, its recall
    the share of its identity inside its predicted cluster.
    """
    true, pred = _check_pair(labels_true, labels_pred)
    if true.size == 0:
        return 1.0, 1.0, 1.0
    n_ij, ti, pj, a, b = _contingency(true, pred)
    n = float(true.size)
    precision = float((n_ij**2 / b[pj]).sum() / n)
    recall = float((n_ij**2 / a[ti]).sum() / n)
    return precision, recall, _f(precision, recall)


def purity(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Share of faces whose predicted cluster's majority identity is their own."""
    true, pred = _check_pair(labels_true, labels_pred)
    if true.size == 0:
        return 1.0
    n_ij, _, pj, _, b = _contingency(true, pred)
    best = np.zeros(b.size)
    np.maximum.at(best, pj, n_ij)
    return float(best.sum() / true.size)
