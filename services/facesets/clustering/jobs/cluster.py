"""`cluster`: every face of a store into person folders by average-linkage clustering.

OUT/person_NNN/ holds the photos of each cluster of two or more faces, OUT/_singletons/ the
photos of faces that matched nobody, OUT/_noface/ the photos without a face, and
OUT/manifest.json says which face of which photo went where.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from facesets.clustering.jobs.context import ClusteringJob, JobContext, Writes
from facesets.clustering.jobs.job import (
    JobOutcome,
    ProgressFn,
    model_identity,
    open_faces,
    photo_codes_of,
    store_identity,
)
from facesets.clustering.jobs.materialize import check_output_folder, sync_outputs
from facesets.clustering.jobs.raw import (
    cannot_link_json,
    components_json,
    layout_from_labels,
    linkage_progress,
    raw_outputs,
)
from facesets.clustering.linkage import cluster_average_linkage
from facesets.clustering.store import FaceStore
from facesets.common.roots import Roots
from facesets.contract import layout
from facesets.contract.clustering import ClusterParams
from facesets.contract.manifests import ClusterManifest
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)


def cluster(
    store: FaceStore,
    out: Path,
    params: ClusterParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    """Cluster every readable face of the store into OUT (see the module docstring)."""
    params = params or ClusterParams()
    link_mode = params.link_mode.value
    out = Path(out)
    check_output_folder(out, layout.CLUSTER_MANIFEST, ClusterManifest, "cluster", store)
    table, photos, rows = open_faces(store, roots, progress)

    face_ids = table.face_id[rows]
    assert table.embedding is not None
    result = cluster_average_linkage(
        table.embedding[rows],
        params.threshold,
        dense_max=params.dense_max,
        progress=linkage_progress(progress, "cluster"),
        photo=photo_codes_of(table, rows, params.cannot_link),
    )
    raw = layout_from_labels(result.labels, face_ids)
    wanted, sections = raw_outputs(raw, table, photos)
    components = components_json(result, face_ids)
    manifest = ClusterManifest(
        command="cluster",
        parameters=params.recorded(),
        store=store_identity(store),
        store_id=store.store_id,
        model=model_identity(store),
        extra={
            "cannot_link": cannot_link_json(params.cannot_link, result.prevented),
            "components": components,
            "search": result.search.as_json() if result.search else None,
        },
    )
    manifest_path = out / layout.CLUSTER_MANIFEST
    sync = sync_outputs(
        out, layout.CLUSTER_MANIFEST, wanted, sections.into(manifest), link_mode, progress
    )
    summary = {
        "persons": len(raw.persons),
        "faces_clustered": int(rows.size),
        "faces_in_persons": sum(len(f) for f in raw.persons.values()),
        "singletons": len(raw.singletons),
        "noface_photos": len(sections.noface),
        "missing_photos": len(photos.missing_photos()),
        "missing_paths": len(photos.missing_paths),
        "changed_paths": len(photos.changed_paths),
        "errors": sections.errors,
        "components": components["methods"],
        "merges_prevented": result.prevented,
        **sync.summary(),
    }
    log.info(
        "cluster done",
        out=str(out),
        **{k: v for k, v in summary.items() if k != "foreign_conflicts"},
    )
    return JobOutcome(summary=summary, manifest_path=manifest_path)


Request = clustering_pb2.ClusterRequest


class Cluster(ClusteringJob[Request, ClusterParams]):
    params = ClusterParams

    def writes(self, ctx: JobContext[Request], params: ClusterParams) -> Writes:
        return Writes([ctx.required(ctx.request.out, "out")], create=True)

    def run(self, ctx: JobContext[Request], params: ClusterParams) -> JobOutcome:
        out = ctx.required(ctx.request.out, "out")
        return cluster(ctx.store, out, params, progress=ctx.progress, roots=ctx.roots)
