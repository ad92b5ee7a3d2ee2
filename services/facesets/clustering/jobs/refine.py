"""`refine`: clean per-identity face sets from a store.

Initial average-linkage clustering, then a centroid merge of over-split clusters, a quality gate
on each face, outlier rejection against each cluster's centroid and a size filter on unique
photos. What survives goes to OUT/faceset_NNN/ with OUT/refine_manifest.json, which also lists
every face each gate removed (extend reads it to leave those faces out). Faces of one photo never
share a cluster (cannot-link, unless turned off); facesets kept apart only by that, whose
centroids lie within the merge threshold plus a margin, are listed as `lookalikes` for review.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import structlog

from facesets.clustering import linkage
from facesets.clustering.different_people import cannot_pairs
from facesets.clustering.jobs import quality
from facesets.clustering.jobs.context import ClusteringJob, JobContext, Writes
from facesets.clustering.jobs.facesets import (
    faceset_entry,
    faceset_files,
    kept_numbers,
)
from facesets.clustering.jobs.job import (
    JobOutcome,
    ProgressFn,
    model_identity,
    open_faces,
    ordered_groups,
    photo_codes_of,
    report,
    sorted_ids,
    store_identity,
)
from facesets.clustering.jobs.materialize import check_output_folder, sync_outputs
from facesets.clustering.jobs.raw import cannot_link_json, linkage_progress
from facesets.clustering.lookalikes import lookalike_pairs
from facesets.clustering.store import FaceStore
from facesets.common.roots import Roots
from facesets.contract import layout
from facesets.contract.clustering import RefineParams
from facesets.contract.manifests import RefineManifest
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)


def refine(
    store: FaceStore,
    out: Path,
    params: RefineParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    """Build OUT/faceset_NNN/ folders of one clean identity each (see the module docstring)."""
    p = params or RefineParams()
    link_mode = p.link_mode.value
    out = Path(out)
    earlier = check_output_folder(out, layout.REFINE_MANIFEST, RefineManifest, "refine", store)
    table, photos, rows = open_faces(store, roots, progress)
    assert table.embedding is not None
    emb = table.embedding[rows]
    face_ids = table.face_id[rows]

    photo = photo_codes_of(table, rows, p.cannot_link)
    different = cannot_pairs(store.path, face_ids)  # facesets a person marked as two people
    initial = linkage.cluster_average_linkage(
        emb,
        p.initial_threshold,
        progress=linkage_progress(progress, "cluster"),
        photo=photo,
        cannot=different,
    )
    report(progress, "refine", 0, 4)
    merge = linkage.merge_centroids(
        emb, initial.labels, p.merge_threshold, photo=photo, cannot=different
    )
    labels = np.asarray(merge.labels)
    merged_clusters = initial.n_clusters - len(np.unique(labels[labels >= 0]))
    prevented = {
        "linkage": initial.prevented,
        "centroid_merge": merge.prevented,
    }
    report(progress, "refine", 1, 4)

    passed = quality.passes(p.gate, table, rows)
    by_test = quality.removed(p.gate, table, rows)
    quality_rejected = sorted_ids(face_ids[~passed])
    labels = np.where(passed, labels, -1)
    report(progress, "refine", 2, 4)

    before_outliers = labels >= 0
    labels = np.asarray(
        linkage.reject_outliers(emb, labels, p.outlier_threshold, p.outlier_min_cluster)
    )
    outliers = sorted_ids(face_ids[before_outliers & (labels < 0)])
    report(progress, "refine", 3, 4)

    kept: list[list[int]] = []
    small: list[int] = []
    small_clusters = 0
    for group in ordered_groups(labels, face_ids):
        unique_photos = {table.sha256[rows[r]] for r in group}
        if len(unique_photos) >= p.min_faces:
            kept.append(sorted_ids(face_ids[group]))
        else:
            small.extend(int(f) for f in face_ids[group])
            small_clusters += 1
    report(progress, "refine", 4, 4)

    same_store = earlier is not None and earlier.store_id == store.store_id
    numbers = kept_numbers(kept, earlier.entries() if earlier and same_store else [])
    facesets = [faceset_entry(n, ids, table) for n, ids in zip(numbers, kept, strict=True)]
    facesets.sort(key=lambda entry: entry.number)
    parameters = p.recorded()
    lookalikes = lookalike_pairs(facesets, p.merge_threshold + p.lookalike_margin)
    removed = {
        "merged_clusters": int(merged_clusters),
        "quality": len(quality_rejected),
        "outliers": len(outliers),
        "small_clusters": small_clusters,
        "small_cluster_faces": len(small),
    }
    gates = quality.summary(
        "refine",
        table,
        rows,
        by_test,
        gate=p.gate,
        outlier_threshold=p.outlier_threshold,
        min_faces=p.min_faces,
        outliers=len(outliers),
        cluster_size=len(small),
        kept=sum(len(ids) for ids in kept),
    )
    manifest = RefineManifest(
        command="refine",
        facesets=facesets,
        parameters=parameters,
        store=store_identity(store),
        store_id=store.store_id,
        model=model_identity(store),
    )
    manifest.extra = {
        "removed": removed,
        "search": initial.search.as_json() if initial.search else None,
        "cannot_link": cannot_link_json(p.cannot_link, sum(prevented.values()))
        | {"by_stage": prevented},
        "lookalikes": [pair.to_json() for pair in lookalikes],
        "gates": gates,
        "rejected": {
            "quality": quality_rejected,
            "outliers": outliers,
            "small_clusters": sorted(small),
        },
        "missing_sources": photos.missing_report(),
    }
    wanted = faceset_files(facesets, photos)
    sync = sync_outputs(out, layout.REFINE_MANIFEST, wanted, manifest, link_mode, progress)
    summary = {
        "facesets": len(facesets),
        "faces_in_facesets": sum(len(f.face_ids) for f in facesets),
        "faces_considered": int(rows.size),
        "removed": removed,
        "merges_prevented": sum(prevented.values()),
        "lookalikes": len(lookalikes),
        "gates": gates,
        "missing_photos": len(photos.missing_photos()),
        "missing_paths": len(photos.missing_paths),
        "changed_paths": len(photos.changed_paths),
        **sync.summary(),
    }
    log.info("refine done", out=str(out), facesets=len(facesets), **removed)
    return JobOutcome(summary=summary, manifest_path=out / layout.REFINE_MANIFEST)


Request = clustering_pb2.RefineRequest


class Refine(ClusteringJob[Request, RefineParams]):
    params = RefineParams

    def writes(self, ctx: JobContext[Request], params: RefineParams) -> Writes:
        return Writes([ctx.required(ctx.request.out, "out")], create=True)

    def run(self, ctx: JobContext[Request], params: RefineParams) -> JobOutcome:
        out = ctx.required(ctx.request.out, "out")
        return refine(ctx.store, out, params, progress=ctx.progress, roots=ctx.roots)
