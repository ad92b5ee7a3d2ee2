"""The quality gate applied to faces (its values: facesets.contract.quality.QualityGate) and
the per-gate counts refine, route and discover record.

Refine and route count, among the faces they considered, how many each gate removed: the
quality gate's size, sharpness and detector-score tests (a face is counted at the first it
fails, in that order), then outlier rejection and the cluster-size filter. The counts go into
the job's summary and manifest under "gates"; export copies them into its manifest, so the CLI
and the report can say why a run produced no faceset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from facesets.clustering.store import FaceTable
from facesets.contract import gates
from facesets.contract.quality import QualityGate
from facesets.v1 import common_pb2


def _tests(gate: QualityGate, table: FaceTable, rows: np.ndarray) -> list[np.ndarray]:
    """Per test, in the order the gate applies them, the faces of `rows` that pass it."""
    return [
        table.face_short[rows] >= gate.min_short,
        table.blur[rows] >= gate.min_blur,
        table.det_score[rows] >= gate.min_det_score,
    ]


def passes(gate: QualityGate, table: FaceTable, rows: np.ndarray) -> np.ndarray:
    size, sharp, detected = _tests(gate, table, rows)
    return size & sharp & detected


def removed(gate: QualityGate, table: FaceTable, rows: np.ndarray) -> dict[str, int]:
    """Faces of `rows` each quality test removes, each face counted at the first it fails
    (size, then sharpness, then detector score)."""
    size, sharp, detected = _tests(gate, table, rows)
    small = ~size
    blurred = ~small & ~sharp
    weak = ~small & ~blurred & ~detected
    return {"size": int(small.sum()), "blur": int(blurred.sum()), "det_score": int(weak.sum())}


def recorded_gate(parameters: Mapping[str, Any]) -> QualityGate:
    """The gate a manifest's parameters record (the defaults where it records none)."""
    names = {field.name for field in dataclasses.fields(QualityGate)}
    return QualityGate(**{k: float(v) for k, v in parameters.items() if k in names})


def earlier_sharpness(table: FaceTable, rows: np.ndarray) -> int:
    """Faces of `rows` whose sharpness is of the earlier measure (not comparable to the gate)."""
    return int(np.sum(table.blur_measure[rows] < common_pb2.BLUR_MEASURE_CANONICAL))


def summary(
    stage: str,
    table: FaceTable,
    rows: np.ndarray,
    quality: Mapping[str, int],
    *,
    gate: QualityGate,
    outlier_threshold: float,
    min_faces: int,
    outliers: int,
    cluster_size: int,
    kept: int,
) -> gates.GateSummary:
    """The "gates" entry of a job over `rows` (see facesets.contract.gates)."""
    size, sharp, detected = (getattr(gate, f.name) for f in dataclasses.fields(QualityGate))
    thresholds = {
        "size": size,
        "blur": sharp,
        "det_score": detected,
        "outliers": outlier_threshold,
        "cluster_size": min_faces,
    }
    return gates.gate_summary(
        stage,
        int(rows.size),
        {**quality, "outliers": outliers, "cluster_size": cluster_size},
        kept,
        thresholds,
        earlier_sharpness(table, rows),
    )
