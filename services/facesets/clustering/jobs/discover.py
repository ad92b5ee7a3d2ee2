"""`discover`: new identities among the faces of photos under ROOT.

Faces of photos with a path or alias under ROOT that no earlier discover run placed are
considered. Those within `known_threshold` of a canonical faceset's centroid (the export's
`facesets` partition; era splits and quarantined sets live elsewhere) belong to known people
and are dropped; the rest pass refine's quality gate and are clustered, cleaned and kept as
`route` does it (the shared core in identities.py). New facesets are numbered past the
export's maximum, carry a marker naming ROOT, and are added to the plan (a refine manifest)
in EXPORT/.discover/ for the export service. With `dry_run` nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from facesets.clustering import linkage
from facesets.clustering.jobs import quality
from facesets.clustering.jobs.context import ClusteringJob, JobContext, Writes
from facesets.clustering.jobs.facesets import faceset_entry
from facesets.clustering.jobs.identities import (
    ExportView,
    new_identities,
    photos_under,
    read_plan,
)
from facesets.clustering.jobs.job import (
    JobOutcome,
    ProgressFn,
    check_made_from,
    model_identity,
    open_faces,
    report,
    sorted_ids,
    store_identity,
)
from facesets.clustering.jobs.raw import cannot_link_json
from facesets.clustering.store import FaceStore
from facesets.common.roots import Roots
from facesets.contract import layout
from facesets.contract.clustering import DiscoverParams
from facesets.contract.manifests import RefineManifest
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)


def discover(
    store: FaceStore,
    root: Path,
    export: Path,
    params: DiscoverParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    """New identities under ROOT, apart from EXPORT's known ones (see above)."""
    p = params or DiscoverParams()
    root, export = Path(root), Path(export)
    plan_path = export / layout.DISCOVER_DIR / layout.REFINE_MANIFEST
    plan = read_plan(plan_path) or RefineManifest()
    check_made_from(plan, store, plan_path.parent)
    table, photos, rows = open_faces(store, roots, progress)
    assert table.embedding is not None

    facesets = plan.entries()
    held = {f for entry in facesets for f in entry.face_ids}
    wanted = photos_under(photos, root)
    in_root = (
        rows[[table.sha256[r] in wanted and int(table.face_id[r]) not in held for r in rows]]
        if rows.size
        else rows
    )

    # 1. Faces of known people go.
    view = ExportView.read(export)
    names, centroids = view.centroids(table, store.store_id)
    unknown = in_root
    if names and in_root.size:
        nearest, _ = linkage.nearest_centroid(
            table.embedding[in_root], centroids, p.known_threshold
        )
        unknown = in_root[nearest < 0]
    known = int(in_root.size - unknown.size)
    report(progress, "known", 1, 1)

    # 2. Clustered at the cluster threshold; refine's gates in each cluster (the core route
    # shares).
    passes = quality.passes(p.gate, table, unknown)
    by_test = quality.removed(p.gate, table, unknown)
    below_gate = int(unknown.size - int(passes.sum()))
    found = new_identities(
        table,
        unknown,
        cluster_threshold=p.cluster_threshold,
        outlier_threshold=p.outlier_threshold,
        outlier_min_cluster=p.outlier_min_cluster,
        min_photos=p.min_faces,
        passes=passes,
        cannot_link=p.cannot_link,
    )
    report(progress, "discover", 1, 1)
    first = max(view.max_number, *(e.number for e in facesets), 0) + 1
    marker = f"discovered under {root}\n"
    new_entries = [
        faceset_entry(number, sorted_ids(table.face_id[group]), table)
        for number, group in enumerate(found.groups, start=first)
    ]
    for entry in new_entries:
        entry.extra = {"discovered_under": str(root), "markers": {layout.DISCOVERED_MARKER: marker}}
    gates = quality.summary(
        "discover",
        table,
        unknown,
        by_test,
        outliers=found.outliers,
        cluster_size=found.unassigned - found.outliers - below_gate,
        kept=sum(len(g) for g in found.groups),
        gate=p.gate,
        outlier_threshold=p.outlier_threshold,
        min_faces=p.min_faces,
    )
    # Facesets an earlier run planned whose export did not finish: the export is resumed.
    unexported = [e.name for e in facesets if e.name not in view.canonical]
    written = bool(new_entries) and not p.dry_run
    if written:
        run = {
            "root": str(root),
            "known_threshold": p.known_threshold,
            "cluster_threshold": p.cluster_threshold,
            "new": [e.name for e in new_entries],
            "cannot_link": cannot_link_json(p.cannot_link, found.prevented),
        }
        RefineManifest(
            command="discover",
            facesets=[*facesets, *new_entries],
            store=store_identity(store),
            store_id=store.store_id,
            model=model_identity(store),
            extra={"runs": [*plan.records("runs"), run]},
        ).write(plan_path)
    summary = {
        "root": str(root),
        "faces_under_root": int(in_root.size),
        "faces_known": known,
        "known_facesets": len(names),
        # facesets another store exported into EXPORT: not known identities of this store
        "other_store_facesets": view.of_other_stores(store.store_id),
        "faces_below_quality_gate": below_gate,
        "clusters": [c.as_dict() for c in found.clusters],
        "new_facesets": len(new_entries),
        "new": {e.name: len(e.face_ids) for e in new_entries},
        "faces_unassigned": found.unassigned,
        "cannot_link": cannot_link_json(p.cannot_link, found.prevented),
        "discover_gates": gates,
        "dry_run": p.dry_run,
        "written": written,
        "export_needed": (written or bool(unexported)) and not p.dry_run,
    }
    log.info("discover done", new=len(new_entries), known=known, dry_run=p.dry_run)
    return JobOutcome(summary=summary, manifest_path=plan_path if written else None)


Request = clustering_pb2.DiscoverRequest


class Discover(ClusteringJob[Request, DiscoverParams]):
    """A dry run writes nothing; otherwise the plan goes into EXPORT/.discover/."""

    params = DiscoverParams

    def writes(self, ctx: JobContext[Request], params: DiscoverParams) -> Writes:
        export = ctx.required(ctx.request.export, "export")
        return Writes() if params.dry_run else Writes([export / layout.DISCOVER_DIR], True)

    def run(self, ctx: JobContext[Request], params: DiscoverParams) -> JobOutcome:
        root = ctx.required(ctx.request.root, "root")
        export = ctx.required(ctx.request.export, "export")
        return discover(ctx.store, root, export, params, progress=ctx.progress, roots=ctx.roots)
