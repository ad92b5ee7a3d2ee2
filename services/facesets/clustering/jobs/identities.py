"""What `route` (Immich import) and `discover` share: new identities among faces no known
identity claims, and the views of photos and exports both jobs read.

`cluster_faces` is the one place these jobs call the linkage, so a constraint the linkage
learns (faces of one photo never in one cluster, say) reaches both through one argument.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesets.clustering import linkage
from facesets.clustering.jobs.job import (
    JobError,
    Photos,
    face_index_by_id,
    ordered_groups,
    photo_codes_of,
)
from facesets.clustering.store import FaceTable
from facesets.contract import layout
from facesets.contract.manifests import (
    ExportManifest,
    FacesetManifest,
    ManifestError,
    RefineManifest,
)


def read_plan(path: Path) -> RefineManifest | None:
    """A plan (refine manifest) an earlier run wrote; None when there is none."""
    try:
        return RefineManifest.read(path)
    except ManifestError as exc:
        raise JobError(f"{exc}: not a refine manifest; move it away and run again") from exc


def cluster_faces(
    emb: np.ndarray, threshold: float, photo: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Average-linkage labels of these faces at cosine distance `threshold`, and the merges
    the cannot-link constraint prevented (`photo`: one photo code per face; None: off)."""
    result = linkage.cluster_average_linkage(emb, threshold, photo=photo)
    return np.asarray(result.labels), int(result.prevented)


@dataclass(frozen=True)
class ClusterOutcome:
    """One cluster of the faces left over: its size, the faces the outlier gate left, the
    distinct photos of those, and whether it became a new identity."""

    size: int
    survivors: int
    photos: int
    kept: bool

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "size": self.size,
            "survivors": self.survivors,
            "photos": self.photos,
            "kept": self.kept,
        }


@dataclass(frozen=True)
class NewIdentities:
    groups: list[np.ndarray]  # face-table rows of each new identity, in numbering order
    clusters: list[ClusterOutcome]  # every cluster, largest first
    outliers: int  # faces the outlier gate removed
    unassigned: int  # faces of `rows` in no new identity
    prevented: int = 0  # merges the cannot-link constraint prevented


def new_identities(
    table: FaceTable,
    rows: np.ndarray,
    *,
    cluster_threshold: float,
    outlier_threshold: float,
    outlier_min_cluster: int,
    min_photos: int,
    passes: np.ndarray | None = None,
    cannot_link: bool = True,
) -> NewIdentities:
    """Cluster the faces `rows` (face-table rows); in each cluster keep the faces that pass
    the quality gate (`passes`, one flag per row; None: all) and drop the outliers among them
    (clusters of `outlier_min_cluster` faces or more); keep the clusters whose survivors come
    from at least `min_photos` distinct photos. Groups come largest first, ties by smallest
    face id."""
    if not rows.size:
        return NewIdentities([], [], 0, 0)
    assert table.embedding is not None
    emb = table.embedding[rows]
    labels, prevented = cluster_faces(
        emb, cluster_threshold, photo_codes_of(table, rows, cannot_link)
    )
    gated = labels.copy()
    if passes is not None:
        gated[~np.asarray(passes, dtype=bool)] = -1
    cleaned = np.asarray(
        linkage.reject_outliers(emb, gated, outlier_threshold, outlier_min_cluster)
    )
    outliers = int(np.sum((gated >= 0) & (cleaned < 0)))
    ids = table.face_id[rows]
    groups: list[np.ndarray] = []
    clusters: list[ClusterOutcome] = []
    for group in ordered_groups(labels, ids):
        survivors = group[cleaned[group] >= 0]
        photos = len({table.sha256[rows[r]] for r in survivors})
        kept = bool(survivors.size) and photos >= min_photos
        clusters.append(ClusterOutcome(int(group.size), int(survivors.size), photos, kept))
        if kept:
            groups.append(rows[survivors])
    groups.sort(key=lambda g: (-len(g), int(table.face_id[g].min())))
    unassigned = int(rows.size - sum(len(g) for g in groups))
    return NewIdentities(groups, clusters, outliers, unassigned, prevented)


def under(path: str, folder: Path) -> bool:
    """Whether `path` lies in `folder` (or below), compared as absolute normalised paths."""
    root = os.path.normpath(os.path.abspath(folder))
    return os.path.normpath(os.path.abspath(path)).startswith(root.rstrip(os.sep) + os.sep)


def photos_under(photos: Photos, folder: Path) -> set[str]:
    """Photos (sha256) with a path or an alias under `folder` that still exists."""
    return {sha for sha, paths in photos.existing.items() if any(under(p, folder) for p in paths)}


@dataclass(frozen=True)
class ExportView:
    """What an export folder already holds: its highest faceset number (every partition and
    folder counted) and the face ids of each canonical faceset (the `facesets` partition)."""

    numbers: set[int]
    canonical: dict[str, list[int]]
    stores: dict[str, str] = field(default_factory=dict)  # faceset -> the store id it records

    @property
    def max_number(self) -> int:
        return max(self.numbers, default=0)

    @classmethod
    def read(cls, export: Path) -> ExportView:
        try:
            manifest = ExportManifest.read(export / layout.EXPORT_MANIFEST) or ExportManifest()
        except ManifestError as exc:
            raise JobError(str(exc)) from exc
        numbers = [
            number
            for _, _, e in manifest.entries()
            if isinstance(number := e.get("number"), int) and not isinstance(number, bool)
        ]
        if export.is_dir():
            # Faceset folders at the top or one level down (`_thin/`, `_merged/` ...).
            for child in [*export.glob("faceset_*"), *export.glob("*/faceset_*")]:
                digits = child.name.removeprefix("faceset_")[:3]
                if child.is_dir() and digits.isdigit():
                    numbers.append(int(digits))
        canonical: dict[str, list[int]] = {}
        stores: dict[str, str] = {}
        for name, entry in sorted(manifest.partition("facesets").items()):
            if isinstance(store_id := entry.get("store_id"), str) and store_id:
                stores[name] = store_id
            try:
                set_manifest = FacesetManifest.read(export / str(entry.get("manifest", "")))
            except ManifestError as exc:
                raise JobError(str(exc)) from exc
            if set_manifest is not None:
                canonical[name] = set_manifest.face_ids()
        return cls(set(numbers), canonical, stores)

    def of_other_stores(self, store_id: str) -> list[str]:
        """The canonical facesets another store exported (their entries record its id)."""
        return sorted(n for n, recorded in self.stores.items() if recorded != store_id)

    def centroids(self, table: FaceTable, store_id: str) -> tuple[list[str], np.ndarray]:
        """Names and centroids (unit rows) of the canonical facesets whose faces this store
        holds; a faceset of faces from another store is left out (by the id its entry
        records: another store's face ids name other faces here; else by the ids held)."""
        assert table.embedding is not None
        index = face_index_by_id(table)
        names: list[str] = []
        vectors: list[np.ndarray] = []
        others = set(self.of_other_stores(store_id))
        for name, face_ids in self.canonical.items():
            if name in others:
                continue
            rows = [index[f] for f in face_ids if f in index]
            if rows:
                mean = table.embedding[rows].mean(axis=0)
                names.append(name)
                vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        dim = table.embedding.shape[1] if table.embedding.ndim == 2 else 0
        matrix = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
        return names, matrix.astype(np.float32)
