"""The raw clustering's folder layout and manifest blocks, shared by cluster, extend and the
jobs that record the cannot-link constraint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from facesets.clustering.jobs.job import (
    Photos,
    ProgressFn,
    ordered_groups,
    report,
    sorted_ids,
)
from facesets.clustering.jobs.materialize import add_file
from facesets.clustering.linkage import ClusterResult
from facesets.clustering.store import FaceTable
from facesets.contract import layout
from facesets.contract.manifests import ClusterManifest, FacesetEntry, Singletons


@dataclass
class RawLayout:
    """Where each face of the raw output goes: person numbers and singletons."""

    persons: dict[int, list[int]] = field(default_factory=dict)  # number -> face ids
    singletons: list[int] = field(default_factory=list)

    def held(self) -> set[int]:
        ids = set(self.singletons)
        for faces in self.persons.values():
            ids.update(faces)
        return ids

    @classmethod
    def from_manifest(cls, manifest: ClusterManifest) -> RawLayout:
        return cls(
            persons={p.number: list(p.face_ids) for p in manifest.persons},
            singletons=list(manifest.singletons.face_ids),
        )


def linkage_progress(progress: ProgressFn | None, stage: str) -> Callable[[int, int], None] | None:
    """linkage reports (done, total); jobs report (stage, done, total)."""
    if progress is None:
        return None
    return lambda done, total: report(progress, stage, done, total)


def components_json(result: ClusterResult, face_ids: np.ndarray) -> dict[str, object]:
    """Per component of two or more faces: its first face, size, clusters and method."""
    multi = [
        {
            "first_face_id": int(face_ids[info.first]),
            "size": info.size,
            "clusters": info.clusters,
            "method": info.method,
        }
        for info in result.components
        if info.size > 1
    ]
    return {
        "methods": dict(sorted(result.method_counts().items())),
        "multi_face": multi,
        "single_face": sum(1 for info in result.components if info.size == 1),
    }


def cannot_link_json(enabled: bool, prevented: int) -> dict[str, object]:
    """The manifest's record of the constraint: on or off, and the merges it prevented."""
    return {"enabled": bool(enabled), "merges_prevented": int(prevented)}


def layout_from_labels(
    labels: np.ndarray, face_ids: np.ndarray, first_number: int = 1
) -> RawLayout:
    raw = RawLayout()
    number = first_number
    for rows in ordered_groups(labels, face_ids):
        ids = sorted_ids(face_ids[rows])
        if len(ids) >= 2:
            raw.persons[number] = ids
            number += 1
        else:
            raw.singletons.extend(ids)
    raw.singletons.sort()
    return raw


@dataclass
class RawSections:
    """The manifest sections describing the raw output's folders."""

    persons: list[FacesetEntry]
    singletons: Singletons
    noface: list[str]
    faces: list[dict[str, int | str]]
    missing_sources: dict[str, list[str]]
    errors: dict[str, int]

    def into(self, manifest: ClusterManifest) -> ClusterManifest:
        manifest.persons, manifest.singletons = self.persons, self.singletons
        manifest.extra = manifest.extra | {
            "noface": self.noface,
            "faces": self.faces,
            "missing_sources": self.missing_sources,
            "errors": self.errors,
        }
        return manifest


def raw_outputs(
    raw: RawLayout, table: FaceTable, photos: Photos
) -> tuple[dict[str, str], RawSections]:
    """The files the raw output should hold and the manifest sections describing them."""
    row_of = {int(f): i for i, f in enumerate(table.face_id)}
    wanted: dict[str, str] = {}
    faces: list[dict[str, int | str]] = []

    def place(folder: str, face_ids: list[int]) -> list[str]:
        shas: set[str] = set()
        for face_id in face_ids:
            row = row_of[face_id]
            sha = table.sha256[row]
            faces.append(
                {
                    "face_id": face_id,
                    "sha256": sha,
                    "face_index": int(table.face_index[row]),
                    "folder": folder,
                }
            )
            if sha not in shas:
                shas.add(sha)
                for path in photos.existing.get(sha, []):
                    add_file(wanted, folder, path)
        return sorted(shas)

    persons = []
    for number in sorted(raw.persons):
        name = layout.PERSON_DIR.format(number)
        shas = place(name, raw.persons[number])
        persons.append(FacesetEntry(name, number, raw.persons[number], photos=shas))
    singleton_photos = place(layout.SINGLETONS_DIR, raw.singletons)
    noface = photos.noface()
    for sha in noface:
        for path in photos.existing[sha]:
            add_file(wanted, layout.NOFACE_DIR, path)
    faces.sort(key=lambda f: (int(f["face_id"]), str(f["folder"])))
    sections = RawSections(
        persons=persons,
        singletons=Singletons(raw.singletons, singleton_photos),
        noface=noface,
        faces=faces,
        missing_sources=photos.missing_report(),
        errors=photos.errors(),
    )
    return wanted, sections
