"""`route`: identity routing and discovery for faces added to a store since its facesets were
built (an Immich import, say).

Faces that pass refine's quality gate and lie within `match_threshold` of an existing
faceset's centroid join that faceset; the rest are clustered among themselves, cleaned by
refine's outlier and size gates, and become new facesets numbered past the current maximum.
Existing numbers never change. Faces of one photo never share a faceset (cannot-link, unless
turned off): a face does not join a faceset holding another face of its photo. The facesets
folder is a refine output: its refine_manifest.json is updated in place (atomically) and photos
are materialised as refine does. Re-running with the same store changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import structlog

from facesets.clustering import linkage
from facesets.clustering.jobs import quality
from facesets.clustering.jobs.context import ClusteringJob, JobContext, Writes
from facesets.clustering.jobs.facesets import faceset_entry, faceset_files
from facesets.clustering.jobs.identities import new_identities
from facesets.clustering.jobs.job import (
    JobOutcome,
    ProgressFn,
    check_made_from,
    held_photos,
    model_identity,
    open_faces,
    photo_of,
    report,
    sorted_ids,
    store_identity,
)
from facesets.clustering.jobs.materialize import (
    read_manifest,
    roll_back_consolidation,
    sync_outputs,
)
from facesets.clustering.jobs.raw import cannot_link_json
from facesets.clustering.jobs.seeds import Seed, apply_seeds
from facesets.clustering.store import FaceStore
from facesets.common.roots import Roots
from facesets.contract import layout
from facesets.contract.clustering import RouteParams
from facesets.contract.manifests import FacesetEntry, RefineManifest
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)


def route(
    store: FaceStore,
    facesets_dir: Path,
    params: RouteParams | None = None,
    *,
    sha256: Sequence[str] = (),
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
    seeds: Sequence[Seed] = (),
) -> JobOutcome:
    """Route faces of `sha256` (every unheld face when empty) into FACESETS_DIR (see above);
    `seeds` (people curated in Immich) seed or update their facesets first (seeds.py)."""
    p = params or RouteParams()
    link_mode = p.link_mode.value
    facesets_dir = Path(facesets_dir)
    manifest_path = facesets_dir / layout.REFINE_MANIFEST
    if facesets_dir.is_dir():
        roll_back_consolidation(facesets_dir)  # a consolidation a crash cut short
    previous = read_manifest(manifest_path, RefineManifest)
    if previous is not None:
        check_made_from(previous, store, facesets_dir, holds_faces=bool(previous.facesets))
    manifest = previous or RefineManifest(command="refine")
    facesets = manifest.entries()
    table, photos, rows = open_faces(store, roots, progress)
    assert table.embedding is not None
    # Seeds add the Immich person and the named folder to their entries' extra fields.
    seeding = apply_seeds(facesets, seeds, table, rows, p) if seeds else None
    if seeding is not None:
        facesets = seeding.facesets

    held = {f for entry in facesets for f in entry.face_ids}
    wanted_photos = set(sha256)
    ids = table.face_id[rows]
    in_scope = np.array(
        [(not wanted_photos or table.sha256[r] in wanted_photos) for r in rows], dtype=bool
    ).reshape(-1)
    unheld = ~np.isin(ids, np.fromiter(held, dtype=np.int64, count=len(held)))
    scoped = rows[in_scope & unheld]
    passing = scoped[quality.passes(p.gate, table, scoped)] if scoped.size else scoped
    below_gate = int(scoped.size - passing.size)
    by_test = quality.removed(p.gate, table, scoped)

    # 1. Faces of known identities join them.
    matched: dict[int, list[int]] = {}
    rest = passing
    prevented = 0
    if facesets and passing.size:
        centroids = np.asarray([entry.centroid for entry in facesets], dtype=np.float32)
        found = linkage.assign_nearest(
            table.embedding[passing],
            centroids,
            p.match_threshold,
            photo=photo_of(table, passing, p.cannot_link),
            held=held_photos(facesets),
        )
        nearest = found.rows
        prevented += found.prevented
        for row, target in zip(passing, nearest, strict=True):
            if target >= 0:
                matched.setdefault(int(target), []).append(int(table.face_id[row]))
        rest = passing[nearest < 0]
    report(progress, "match", 1, 1)
    for target, new_ids in matched.items():
        entry = facesets[target]
        facesets[target] = faceset_entry(
            entry.number, sorted_ids([*entry.face_ids, *new_ids]), table
        )

    # 2. The rest form new identities, cleaned as refine cleans them.
    new_entries: list[FacesetEntry] = []
    unassigned = outliers = 0
    if rest.size:
        identities = new_identities(
            table,
            rest,
            cluster_threshold=p.cluster_threshold,
            outlier_threshold=p.outlier_threshold,
            outlier_min_cluster=p.outlier_min_cluster,
            min_photos=p.min_faces,
            cannot_link=p.cannot_link,
        )
        outliers, unassigned = identities.outliers, identities.unassigned
        prevented += identities.prevented
        next_number = max((e.number for e in facesets), default=0) + 1
        for number, group in enumerate(identities.groups, start=next_number):
            new_entries.append(faceset_entry(number, sorted_ids(table.face_id[group]), table))
    report(progress, "discover", 1, 1)
    facesets.extend(new_entries)

    faces_kept = sum(len(v) for v in matched.values()) + sum(len(e.face_ids) for e in new_entries)
    gates = quality.summary(
        "route",
        table,
        scoped,
        by_test,
        gate=p.gate,
        outlier_threshold=p.outlier_threshold,
        min_faces=p.min_faces,
        outliers=outliers,
        cluster_size=unassigned - outliers,
        kept=faces_kept,
    )
    routed = replace(
        manifest,
        command=manifest.command or "refine",
        facesets=facesets,
        store=store_identity(store),
        store_id=store.store_id,
        model=model_identity(store),
        # a folder route starts records the parameters refine would have recorded
        parameters=manifest.parameters
        if manifest.parameters is not None
        else {"min_faces": int(p.min_faces), **p.gate.recorded(), "link_mode": link_mode},
        written=None,
        pending=None,
    )
    extra = dict(manifest.extra) | {"missing_sources": photos.missing_report()}
    # The last route's count; a re-run prevents the same merges, so the manifest stays as is.
    extra["route_cannot_link"] = cannot_link_json(p.cannot_link, prevented)
    if seeding is not None:
        extra["immich_disagreements"] = seeding.disagreements
    else:
        extra.pop("immich_disagreements", None)
    seeded = seeding is not None and bool(seeding.seeded or seeding.renamed)
    if matched or new_entries or seeded or "gates" not in extra:  # a re-run leaves it as is
        extra["gates"] = gates
    if matched or new_entries or seeded:
        extra["routes"] = [
            *manifest.records("routes"),
            {
                "match_threshold": float(p.match_threshold),
                "cluster_threshold": float(p.cluster_threshold),
                "matched": {facesets[t].name: sorted(i) for t, i in sorted(matched.items())},
                "new": [entry.name for entry in new_entries],
                "cannot_link": cannot_link_json(p.cannot_link, prevented),
                **(
                    {"seeded": seeding.seeded, "renamed": seeding.renamed}
                    if seeding is not None
                    else {}
                ),
            },
        ]
    routed.extra = extra
    sync = sync_outputs(
        facesets_dir,
        layout.REFINE_MANIFEST,
        faceset_files(facesets, photos),
        routed,
        link_mode,
        progress,
    )
    summary = {
        "faces_considered": int(scoped.size),
        "faces_below_quality_gate": below_gate,
        "faces_matched": sum(len(v) for v in matched.values()),
        "identities_matched": len(matched),
        "new_facesets": len(new_entries),
        "faces_new": sum(len(e.face_ids) for e in new_entries),
        "faces_unassigned": unassigned,
        "merges_prevented": prevented,
        "facesets": len(facesets),
        "gates": gates,
        **(
            {
                "immich_seeded": {k: len(v) for k, v in seeding.seeded.items()},
                "immich_new": seeding.new,
                "immich_renamed": seeding.renamed,
                "immich_disagreements": seeding.disagreements,
            }
            if seeding is not None
            else {}
        ),
        **sync.summary(),
    }
    log.info("route done", **{k: v for k, v in summary.items() if isinstance(v, int)})
    return JobOutcome(summary=summary, manifest_path=manifest_path)


Request = clustering_pb2.RouteRequest


class Route(ClusteringJob[Request, RouteParams]):
    params = RouteParams

    def writes(self, ctx: JobContext[Request], params: RouteParams) -> Writes:
        return Writes([ctx.required(ctx.request.facesets_dir, "facesets_dir")], create=True)

    def run(self, ctx: JobContext[Request], params: RouteParams) -> JobOutcome:
        folder = ctx.required(ctx.request.facesets_dir, "facesets_dir")
        return route(
            ctx.store,
            folder,
            params,
            sha256=list(ctx.request.sha256),
            progress=ctx.progress,
            roots=ctx.roots,
            seeds=[Seed(s.key, s.name.strip(), tuple(s.face_ids)) for s in ctx.request.seeds],
        )
