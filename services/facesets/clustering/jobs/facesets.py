"""What makes a faceset, shared by the jobs that write facesets: the quality gate, a faceset's
manifest entry and the files it names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facesets.clustering.jobs.job import (
    Photos,
    centroid_of,
    vector_json,
)
from facesets.clustering.jobs.materialize import add_file
from facesets.clustering.store import FaceTable
from facesets.contract import layout
from facesets.contract.clustering import RefineParams


@dataclass(frozen=True)
class QualityGate:
    min_short: float
    min_blur: float
    min_det_score: float

    def passes(self, table: FaceTable, rows: np.ndarray) -> np.ndarray:
        return (
            (table.face_short[rows] >= self.min_short)
            & (table.blur[rows] >= self.min_blur)
            & (table.det_score[rows] >= self.min_det_score)
        )

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> QualityGate:
        """The gate a refine manifest records (refine's defaults where it records none)."""
        default = RefineParams()
        return cls(
            min_short=float(parameters.get("min_short", default.min_short)),
            min_blur=float(parameters.get("min_blur", default.min_blur)),
            min_det_score=float(parameters.get("min_det_score", default.min_det_score)),
        )


def faceset_entry(number: int, face_ids: list[int], table: FaceTable) -> dict[str, Any]:
    """One faceset as the manifest lists it (the export service reads name, number, face_ids)."""
    row_of = {int(f): i for i, f in enumerate(table.face_id)}
    rows = [row_of[f] for f in face_ids]
    assert table.embedding is not None
    return {
        "name": layout.FACESET_DIR.format(number),
        "number": number,
        "face_ids": face_ids,
        "photos": sorted({table.sha256[r] for r in rows}),
        "centroid": vector_json(centroid_of(table.embedding[rows])),
    }


def faceset_files(facesets: list[dict[str, Any]], photos: Photos) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for entry in facesets:
        for sha in entry["photos"]:
            for path in photos.existing.get(sha, []):
                add_file(wanted, entry["name"], path)
    return wanted
