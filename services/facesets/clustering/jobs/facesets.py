"""What makes a faceset, shared by the jobs that write facesets: a faceset's manifest entry
and the files it names (the quality gate: quality.py)."""

from __future__ import annotations

from facesets.clustering.jobs.job import (
    Photos,
    centroid_of,
    vector_json,
)
from facesets.clustering.jobs.materialize import add_file
from facesets.clustering.store import FaceTable
from facesets.contract import layout
from facesets.contract.manifests import FacesetEntry


def faceset_entry(number: int, face_ids: list[int], table: FaceTable) -> FacesetEntry:
    """One faceset as the manifest lists it (the export service reads name, number, face_ids)."""
    row_of = {int(f): i for i, f in enumerate(table.face_id)}
    rows = [row_of[f] for f in face_ids]
    assert table.embedding is not None
    return FacesetEntry(
        name=layout.FACESET_DIR.format(number),
        number=number,
        face_ids=face_ids,
        photos=sorted({table.sha256[r] for r in rows}),
        centroid=vector_json(centroid_of(table.embedding[rows])),
    )


def faceset_files(facesets: list[FacesetEntry], photos: Photos) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for entry in facesets:
        for sha in entry.photos or []:
            for path in photos.existing.get(sha, []):
                add_file(wanted, entry.name, path)
    return wanted
