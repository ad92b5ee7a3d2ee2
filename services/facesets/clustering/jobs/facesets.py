"""What makes a faceset, shared by the jobs that write facesets: a faceset's manifest entry
and the files it names (the quality gate: quality.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

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


def kept_numbers(groups: Sequence[Sequence[int]], previous: Sequence[FacesetEntry]) -> list[int]:
    """Numbers for a refine run's facesets (face-id groups, in their order) that keep the
    previous run's: a group takes the number of the previous faceset most of whose faces it
    holds (one each, the largest overlaps first), so that after new photos a person keeps
    the number the export, its decisions and the user know them by; the others are numbered
    past every number the previous run gave, in order. No previous run: 1, 2, 3, ..."""
    owner = {face: entry.number for entry in previous for face in entry.face_ids}
    size = {entry.number: len(set(entry.face_ids)) for entry in previous}
    pairs: list[tuple[int, int, int]] = []  # (-faces shared, group, previous number)
    for index, group in enumerate(groups):  # one pass over the faces, whatever the count
        shared = Counter(owner[face] for face in set(group) if face in owner)
        pairs += [(-n, index, old) for old, n in shared.items() if 2 * n >= size[old]]
    number: dict[int, int] = {}
    taken: set[int] = set()
    for _, index, old in sorted(pairs):
        if index not in number and old not in taken:
            number[index] = old
            taken.add(old)
    following = max((entry.number for entry in previous), default=0) + 1
    numbers: list[int] = []
    for index in range(len(groups)):
        if index not in number:
            number[index], following = following, following + 1
        numbers.append(number[index])
    return numbers
