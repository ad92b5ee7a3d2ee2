"""Eras of one identity: capture years, the curated faceset an era split starts from, and the
sub-clusters it cuts, shared by age probe and age split / extend."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesets.clustering import linkage
from facesets.clustering.jobs.job import (
    JobError,
    Photos,
    face_index_by_id,
    unusable_manifest,
)
from facesets.clustering.store import FaceStore, FaceTable
from facesets.contract import layout
from facesets.contract.manifests import ExportManifest, FacesetManifest, ManifestError

THIN_MARKER = "THIN.txt"


ERA_NAME = "{}_era_{:02d}"


PARTITION_ERAS = "eras"


PARTITION_THIN = "thin_eras"


def subclusters(
    embeddings: np.ndarray, threshold: float, photo_groups: np.ndarray | None = None
) -> np.ndarray:
    """Average-linkage labels at `threshold`: every era job clusters through here.

    `photo_groups` (one photo id per face) is the cannot-link constraint: two faces of one
    photo never share a cluster.
    """
    if embeddings.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    result = linkage.cluster_average_linkage(embeddings, threshold, photo=photo_groups)
    return np.asarray(result.labels, np.int64)


def capture_year(capture_time: str) -> int | None:
    """The year of an ISO capture time as the store keeps it; None when there is none."""
    text = capture_time.strip()
    if len(text) >= 4 and text[:4].isdigit():
        year = int(text[:4])
        return year if year > 0 else None
    return None


def photo_years(photos: Photos) -> dict[str, int | None]:
    """Capture year per photo (sha256), from the store's record of each photo's EXIF."""
    return {sha: capture_year(row.capture_time) for sha, row in photos.rows.items()}


def dominant_year(years: Iterable[int | None]) -> int | None:
    """The most frequent capture year (the earliest among ties); None when none is known."""
    counts = Counter(y for y in years if y is not None)
    if not counts:
        return None
    best = max(counts.values())
    return min(y for y, c in counts.items() if c == best)


def year_spread(years: Sequence[int | None]) -> dict[str, int | None]:
    known = [y for y in years if y is not None]
    return {
        "first": min(known) if known else None,
        "last": max(known) if known else None,
        "dominant": dominant_year(known),
        "dated": len(known),
        "undated": len(years) - len(known),
    }


def faceset_key(faceset: str) -> str:
    """`faceset_007` from `faceset_007`, `7` or `007`."""
    text = faceset.strip().rstrip("/")
    return layout.FACESET_DIR.format(int(text)) if text.isdigit() else text


@dataclass(frozen=True)
class Curated:
    """The faces a person kept in an exported faceset, with the folders they came from."""

    name: str
    face_ids: list[int]
    roots: list[str]


def read_curated(export_dir: Path, faceset: str, store: FaceStore) -> Curated:
    """The faceset's faces as exported, refused when another store exported it (its face ids
    name other faces in this one; an entry exported before stores had ids records none)."""
    name = faceset_key(faceset)
    try:
        top = ExportManifest.read(export_dir / layout.EXPORT_MANIFEST) or ExportManifest()
        entry = top.partition("facesets").get(name, {})
        if not entry.get("manifest"):
            known = ", ".join(sorted(top.partition("facesets"))) or "none"
            raise JobError(f"{export_dir} holds no exported faceset {name!r} (facesets: {known})")
        exported_from = entry.get("store_id")
        if isinstance(exported_from, str) and exported_from and exported_from != store.store_id:
            raise JobError(
                f"{name} in {export_dir} was exported from the face store "
                f"{entry.get('store') or 'of another library'}, not {store.path}; give the "
                "store it was exported from"
            )
        manifest = FacesetManifest.read(export_dir / str(entry["manifest"])) or FacesetManifest()
        if not manifest.crops:
            raise JobError(f"{name} in {export_dir} keeps no crops; nothing to seed eras from")
        roots = {
            os.path.dirname(os.path.abspath(path))
            for crop in manifest.crops
            for path in manifest.sources(crop)
        }
        return Curated(name, sorted(set(manifest.face_ids())), sorted(roots))
    except ManifestError as exc:
        raise unusable_manifest(exc) from exc


def curated_rows(curated: Curated, table: FaceTable, usable: np.ndarray) -> np.ndarray:
    row_of = face_index_by_id(table)
    usable_set = {int(r) for r in usable}
    rows = [row_of[f] for f in curated.face_ids if f in row_of and row_of[f] in usable_set]
    if not rows:
        raise JobError(f"the store holds none of {curated.name}'s faces; was it made from it?")
    return np.array(rows, dtype=np.int64)
