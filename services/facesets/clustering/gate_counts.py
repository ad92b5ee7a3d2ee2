"""Per-gate counts of the quality gate, for the "gates" entry of refine's and route's results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from facesets.clustering.store import FaceTable
from facesets.contract import gates
from facesets.v1 import common_pb2


def quality_removed(
    table: FaceTable, rows: np.ndarray, min_short: float, min_blur: float, min_det_score: float
) -> dict[str, int]:
    """Faces of `rows` each quality test removes, each face counted at the first it fails
    (size, then sharpness, then detector score)."""
    small = table.face_short[rows] < min_short
    blurred = ~small & (table.blur[rows] < min_blur)
    weak = ~small & ~blurred & (table.det_score[rows] < min_det_score)
    return {"size": int(small.sum()), "blur": int(blurred.sum()), "det_score": int(weak.sum())}


def earlier_sharpness(table: FaceTable, rows: np.ndarray) -> int:
    """Faces of `rows` whose sharpness is of the earlier measure (not comparable to the gate)."""
    return int(np.sum(table.blur_measure[rows] < common_pb2.BLUR_MEASURE_CANONICAL))


def summary(
    stage: str,
    table: FaceTable,
    rows: np.ndarray,
    quality: Mapping[str, int],
    *,
    outliers: int,
    cluster_size: int,
    kept: int,
    parameters: Mapping[str, Any],
) -> dict[str, Any]:
    """The "gates" entry of a job over `rows` (see facesets.contract.gates)."""
    thresholds = {
        "size": parameters["min_short"],
        "blur": parameters["min_blur"],
        "det_score": parameters["min_det_score"],
        "outliers": parameters["outlier_threshold"],
        "cluster_size": parameters["min_faces"],
    }
    return gates.gate_summary(
        stage,
        int(rows.size),
        {**quality, "outliers": outliers, "cluster_size": cluster_size},
        kept,
        thresholds,
        earlier_sharpness(table, rows),
    )
