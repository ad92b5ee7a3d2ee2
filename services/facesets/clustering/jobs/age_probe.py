"""`facesets age probe EXPORT FACESET`: whether an exported identity can be sorted by age.

Over the curated faceset's faces: the histogram of pairwise cosine distances, the sub-cluster
sizes (average linkage) at each of the settings' age.probe_thresholds, and the capture-year
spread of each sub-cluster at `sub_threshold`. Nothing is written.

The verdict: the identity is sortable by age when at least two sub-clusters at `sub_threshold`
are anchors (at least `anchor_min_faces` faces each) and the dominant capture years of two of
them differ by more than `era_years`. One anchor, anchors of the same years, or too few dated
photos: not sortable (a split would give one era plus fragments).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np

from facesets.clustering.jobs.context import ClusteringJob, JobContext
from facesets.clustering.jobs.eras import (
    curated_rows,
    photo_years,
    read_curated,
    subclusters,
    year_spread,
)
from facesets.clustering.jobs.job import JobOutcome, Photos, ProgressFn, report, usable_faces
from facesets.clustering.store import FaceStore
from facesets.common import settings
from facesets.common.roots import Roots
from facesets.contract.clustering import AgeProbeParams
from facesets.v1 import clustering_pb2

HISTOGRAM_BINS = np.round(np.arange(0.0, 1.0001, 0.05), 2)  # the last bin takes all above 0.95


class Histogram(TypedDict):
    """Pairwise distances of a faceset's faces, in bins of HISTOGRAM_BINS."""

    bins: list[str]  # each bin's lower edge
    counts: list[int]
    pairs: int
    median: float | None


class AgeGroup(TypedDict):
    """One sub-cluster at `sub_threshold`: its size and the capture years of its photos."""

    faces: int
    years: dict[str, int | None]  # eras.year_spread: first, last, dominant, dated, undated


def _histogram(embeddings: np.ndarray) -> Histogram:
    n = embeddings.shape[0]
    upper = np.triu_indices(n, k=1)
    distances = (1.0 - embeddings @ embeddings.T)[upper]
    edges = [*HISTOGRAM_BINS.tolist()[:-1], 2.0 + 1e-6]
    counts, _ = np.histogram(np.clip(distances, 0.0, 2.0), bins=edges)
    return {
        "bins": [f"{lo:.2f}" for lo in HISTOGRAM_BINS[:-1]],
        "counts": [int(c) for c in counts],
        "pairs": int(distances.size),
        "median": round(float(np.median(distances)), 4) if distances.size else None,
    }


def verdict(groups: list[AgeGroup], anchor_min_faces: int, era_years: int) -> tuple[bool, str]:
    """Sortable by age, and why (the rule in the module docstring)."""
    anchors = [g for g in groups if g["faces"] >= anchor_min_faces]
    dated = sorted({y for g in anchors if (y := g["years"]["dominant"]) is not None})
    if len(anchors) < 2:
        return False, f"{len(anchors)} sub-cluster(s) of {anchor_min_faces}+ faces; need 2"
    if len(dated) < 2 or dated[-1] - dated[0] <= era_years:
        years = ", ".join(str(y) for y in dated) or "none"
        return False, f"anchors' dominant years ({years}) lie within {era_years} years"
    return True, f"anchors' dominant years span {dated[0]}-{dated[-1]} (> {era_years} years)"


def age_probe(
    store: FaceStore,
    export_dir: Path,
    faceset: str,
    params: AgeProbeParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    params = params or AgeProbeParams()
    curated = read_curated(export_dir, faceset, store)
    report(progress, "load", 0, 1)
    table = store.face_table(with_embeddings=True)
    assert table.embedding is not None
    photos = Photos.scan(store, roots)
    rows = curated_rows(curated, table, usable_faces(table, photos))
    years_by_photo = photo_years(photos)
    report(progress, "load", 1, 1)
    emb = table.embedding[rows]
    shas = np.array([table.sha256[r] for r in rows])
    years = [years_by_photo.get(sha) for sha in shas]

    sizes: dict[str, list[int]] = {}
    at_years: list[AgeGroup] = []
    at = round(params.sub_threshold, 4)  # a float32 over gRPC: 0.35 arrives as 0.34999999
    thresholds = sorted({*settings.clustering().age.probe_thresholds, at})
    for done, threshold in enumerate(thresholds, start=1):
        labels = subclusters(emb, threshold, shas)
        members: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            members.setdefault(int(label), []).append(index)
        groups = sorted(members.values(), key=lambda m: (-len(m), m[0]))
        sizes[f"{threshold:.2f}"] = [len(m) for m in groups]
        if threshold == at:
            at_years = [
                {"faces": len(m), "years": year_spread([years[i] for i in m])} for m in groups
            ]
        report(progress, "subclusters", done, len(thresholds))

    sortable, why = verdict(at_years, params.anchor_min_faces, params.era_years)
    undated = sorted(
        {photos.rows[sha].path for sha, y in zip(shas, years, strict=True) if y is None}
    )
    summary = {
        "faceset": curated.name,
        "faces": int(rows.size),
        "histogram": _histogram(emb),
        "subcluster_sizes": sizes,
        "years_at": at,
        "subcluster_years": at_years,
        "sortable": sortable,
        "verdict": "sortable by age" if sortable else "not sortable by age",
        "why": why,
        "no_capture_time": len(undated),
        "no_capture_time_photos": undated[:20],
    }
    return JobOutcome(summary=summary, manifest_path=None)


Request = clustering_pb2.AgeProbeRequest


class AgeProbe(ClusteringJob[Request, AgeProbeParams]):
    """Reads the export; writes nothing."""

    params = AgeProbeParams

    def run(self, ctx: JobContext[Request], params: AgeProbeParams) -> JobOutcome:
        export_dir = ctx.required(ctx.request.export_dir, "export_dir")
        faceset = ctx.faceset(ctx.request.faceset)
        return age_probe(
            ctx.store, export_dir, faceset, params, progress=ctx.progress, roots=ctx.roots
        )
