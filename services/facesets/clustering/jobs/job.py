"""What the clustering jobs share: progress reporting, outcomes and the view of a store's photos."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesets.clustering.jobs.errors import JobError as JobError  # re-exported for the jobs
from facesets.clustering.store import FaceStore, FaceTable, ImageRow
from facesets.common.progress import ProgressFn
from facesets.common.roots import PathRefused, Roots
from facesets.common.vectors import unit_rows as normalise
from facesets.contract.manifests import (
    EraPlan,
    FacesetEntry,
    JobManifest,
    ManifestError,
    ModelIdentity,
)

__all__ = ["ProgressFn", "normalise"]  # the jobs import both from here


@dataclass
class JobOutcome:
    summary: Mapping[str, object]
    manifest_path: Path | None


def report(progress: ProgressFn | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def store_identity(store: FaceStore) -> str:
    return str(store.path.resolve())


def check_store(recorded: JobManifest | EraPlan, store: FaceStore, where: Path) -> None:
    """Refuse a manifest another store's job wrote: its face ids name other faces in this one
    (same model, so `check_model` lets them through). A manifest made before stores had ids
    records none and is read as before."""
    if recorded.store_id and recorded.store_id != store.store_id:
        made_from = recorded.store or "another face store"
        raise JobError(
            f"{where} was made from the face store {made_from}, not {store.path} (another "
            "store, whose face ids name other faces); give the store it was made from, or run "
            "the job from scratch into another folder"
        )


def check_made_from(
    recorded: JobManifest | EraPlan, store: FaceStore, where: Path, *, holds_faces: bool = True
) -> None:
    """`check_model` and `check_store` of a manifest a job reads face ids from."""
    check_model(recorded.model, store, where, holds_faces=holds_faces)
    check_store(recorded, store, where)


def model_identity(store: FaceStore) -> ModelIdentity:
    meta = store.meta()
    return ModelIdentity(str(meta.get("model_pack", "")), int(meta.get("embedding_dim", 0) or 0))


def check_model(
    recorded: ModelIdentity | None, store: FaceStore, where: Path, *, holds_faces: bool = True
) -> None:
    """Refuse to mix face ids and centroids of one model with the embeddings of another. A
    manifest with no faceset, written while the store held no embedding yet (no model, as a
    first import of photos that were all missing gives), holds nothing to mix."""
    if not holds_faces and recorded == ModelIdentity("", 0):
        return
    if recorded is not None and recorded != model_identity(store):
        raise JobError(
            f"{where} was made with model {recorded.to_json()}, but {store.path} holds "
            f"{model_identity(store).to_json()}; run the job again from scratch into another folder"
        )


def unusable_manifest(error: ManifestError) -> JobError:
    """A job's refusal of a manifest it cannot use, with the job's advice alone."""
    return JobError(f"{error.reason}; move it away and re-run")


def centroid_of(embeddings: np.ndarray) -> np.ndarray:
    """The L2-normalised mean: the direction cosine comparisons use."""
    return normalise(np.asarray(embeddings, dtype=np.float32).mean(axis=0))


def vector_json(vector: np.ndarray) -> list[float]:
    """A vector as JSON numbers, rounded so that manifests stay small and byte-stable."""
    return [round(float(v), 6) for v in vector]


def _on_disk(path: str, roots: Roots | None, size: int) -> bool | None:
    """True: a regular file the roots let the job read, of the embedded photo's size; False:
    none there (or outside the roots); None: a file of another size, another photo since."""
    if roots is not None:
        try:
            roots.check_read(path)
        except PathRefused:
            return False
    try:
        info = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    return None if size > 0 and info.st_size != size else True


@dataclass
class Photos:
    """The photos of a store with the paths that still exist on disk.

    A photo whose every path has vanished since it was embedded is `missing`: jobs report it and
    leave its faces out; a photo that lost only some paths keeps the rest. A path whose file is
    no longer the embedded photo's size holds another photo now (replaced, edited): it is
    `changed`, and used no more than a vanished one (placed in a folder, it would put another
    picture, perhaps another person, among a person's photos) until embed reads it again.
    """

    rows: dict[str, ImageRow]
    existing: dict[str, list[str]]  # sha256 -> existing paths, canonical first
    missing_paths: list[str] = field(default_factory=list)
    changed_paths: list[str] = field(default_factory=list)

    @classmethod
    def scan(cls, store: FaceStore, roots: Roots | None = None) -> Photos:
        """`roots`: where a service may read; a path outside them (the store holds what its
        clients sent) counts as missing and is never linked or copied. None: all paths."""
        rows: dict[str, ImageRow] = {}
        existing: dict[str, list[str]] = {}
        missing: list[str] = []
        changed: list[str] = []
        for row in store.images():
            rows[row.sha256] = row
            if row.error_reason:
                continue
            found: list[str] = []
            for path in [row.path, *row.aliases]:
                there = _on_disk(path, roots, row.size)
                (found if there else missing if there is False else changed).append(path)
            existing[row.sha256] = found
        return cls(rows, existing, sorted(missing), sorted(changed))

    def available(self, sha256: str) -> bool:
        return bool(self.existing.get(sha256))

    def missing_photos(self) -> list[str]:
        return sorted(sha for sha, paths in self.existing.items() if not paths)

    def noface(self) -> list[str]:
        return sorted(
            sha
            for sha, row in self.rows.items()
            if not row.error_reason and row.face_count == 0 and self.available(sha)
        )

    def errors(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows.values():
            if row.error_reason:
                counts[row.error_reason] = counts.get(row.error_reason, 0) + 1
        return dict(sorted(counts.items()))

    def missing_report(self) -> dict[str, list[str]]:
        return {
            "photos": self.missing_photos(),
            "paths": self.missing_paths,
            "changed_paths": sorted(self.changed_paths),
        }


def usable_faces(table: FaceTable, photos: Photos) -> np.ndarray:
    """Indices into the face table of faces with an embedding whose photo can still be read."""
    has_embedding = (
        np.linalg.norm(table.embedding, axis=1) > 0
        if table.embedding is not None and table.embedding.size
        else np.zeros(len(table), dtype=bool)
    )
    return np.array(
        [i for i, sha in enumerate(table.sha256) if has_embedding[i] and photos.available(sha)],
        dtype=np.int64,
    )


def face_index_by_id(table: FaceTable) -> dict[int, int]:
    return {int(face_id): i for i, face_id in enumerate(table.face_id)}


def ordered_groups(labels: np.ndarray, face_ids: np.ndarray) -> list[np.ndarray]:
    """Row indices per label (labels < 0 left out), largest first, ties by smallest face id.

    Numbering outputs in this order keeps it the same whatever order the labels came in.
    """
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels):
        if label >= 0:
            groups.setdefault(int(label), []).append(row)
    ordered = [np.array(rows, dtype=np.int64) for rows in groups.values()]
    ordered.sort(key=lambda rows: (-len(rows), int(face_ids[rows].min())))
    return ordered


def sorted_ids(values: Sequence[int] | np.ndarray) -> list[int]:
    return sorted({int(v) for v in values})


def photo_of(table: FaceTable, rows: np.ndarray, cannot_link: bool) -> np.ndarray | None:
    """Per face of `rows`, its photo (sha256) for the cannot-link constraint; None when off."""
    if not cannot_link:
        return None
    return np.array([table.sha256[r] for r in rows], dtype=str).reshape(-1)


def photo_codes_of(table: FaceTable, rows: np.ndarray, cannot_link: bool) -> np.ndarray | None:
    """`photo_of` as int64 codes (one per distinct photo): compact for a whole store."""
    if not cannot_link:
        return None
    code: dict[str, int] = {}
    return np.fromiter(
        (code.setdefault(table.sha256[r], len(code)) for r in rows), np.int64, count=len(rows)
    )


def held_photos(facesets: Sequence[FacesetEntry]) -> tuple[np.ndarray, np.ndarray]:
    """(faceset row, photo) for every photo each faceset entry (its `photos`) holds."""
    rows = [i for i, entry in enumerate(facesets) for _ in entry.photos or []]
    shas = [sha for entry in facesets for sha in entry.photos or []]
    return np.asarray(rows, np.int64), np.asarray(shas, dtype=str).reshape(-1)


def open_faces(
    store: FaceStore, roots: Roots | None, progress: ProgressFn | None
) -> tuple[FaceTable, Photos, np.ndarray]:
    """The opening most jobs share: the store's faces with their embeddings, its photos (those
    the roots let the job read), and the rows of the faces that are usable."""
    report(progress, "load", 0, 1)
    table = store.face_table(with_embeddings=True)
    photos = Photos.scan(store, roots)
    rows = usable_faces(table, photos)
    report(progress, "load", 1, 1)
    return table, photos, rows
