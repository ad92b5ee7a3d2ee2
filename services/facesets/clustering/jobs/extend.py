"""`extend`: fold faces added to a store since `cluster` (and `refine`) into their outputs.

Existing numbers never change. A new face joins the nearest existing person (faceset) whose
centroid lies within the threshold; the remaining new faces are clustered among themselves, and
clusters of two or more become persons numbered past the current maximum, the rest singletons.
Faceset centroids are the ones recorded when each faceset was made, so repeated runs compare
new faces against the same references and decide the same way. A new face never joins a person
or faceset that already holds a face of its photo, and two new faces of one photo never join
one (cannot-link, unless turned off).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import structlog

from facesets.clustering import linkage
from facesets.clustering.jobs import quality
from facesets.clustering.jobs.context import ClusteringJob, JobContext, Writes
from facesets.clustering.jobs.facesets import faceset_files
from facesets.clustering.jobs.job import (
    JobError,
    JobOutcome,
    ProgressFn,
    centroid_of,
    check_made_from,
    face_index_by_id,
    held_photos,
    normalise,
    open_faces,
    photo_codes_of,
    photo_of,
)
from facesets.clustering.jobs.materialize import (
    check_link_mode,
    read_manifest,
    roll_back_consolidation,
    sync_outputs,
)
from facesets.clustering.jobs.raw import (
    RawLayout,
    cannot_link_json,
    components_json,
    layout_from_labels,
    linkage_progress,
    raw_outputs,
)
from facesets.clustering.store import FaceStore, FaceTable
from facesets.common.roots import Roots
from facesets.contract import layout
from facesets.contract.clustering import ExtendParams
from facesets.contract.manifests import ClusterManifest, FacesetEntry, JobManifest, RefineManifest
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=JobManifest)


def _load(out: Path, name: str, store: FaceStore, command: str, model: type[M]) -> M:
    path = out / name
    if name == layout.REFINE_MANIFEST and out.is_dir():
        roll_back_consolidation(out)  # a consolidation a crash cut short
    manifest = read_manifest(path, model)
    if manifest is None:
        raise JobError(f"no {name} in {out}; run `{command}` into it first")
    check_made_from(manifest, store, path)
    return manifest


def _check_known(face_ids: set[int], table: FaceTable, where: Path) -> None:
    unknown = face_ids - {int(f) for f in table.face_id}
    if unknown:
        raise JobError(
            f"{where} lists {len(unknown)} faces the store does not hold "
            f"(e.g. {sorted(unknown)[:5]}); was it made from another store?"
        )


def _nearest(
    emb: np.ndarray,
    centroids: np.ndarray,
    threshold: float,
    photo: np.ndarray | None,
    held: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, int]:
    """Per row of emb, the index of the nearest allowed centroid within threshold, else -1;
    and the faces the cannot-link constraint kept from their nearest (`photo` None: off)."""
    if emb.shape[0] == 0 or centroids.shape[0] == 0:
        return np.full(emb.shape[0], -1, dtype=np.int64), 0
    found = linkage.assign_nearest(emb, centroids, threshold, photo=photo, held=held)
    return np.asarray(found.rows, dtype=np.int64).reshape(emb.shape[0]), found.prevented


def _extend_raw(
    raw: RawLayout,
    table: FaceTable,
    new_rows: np.ndarray,
    threshold: float,
    cannot_link: bool,
    progress: ProgressFn | None,
) -> tuple[dict[str, int], dict[str, object] | None]:
    assert table.embedding is not None
    row_of = face_index_by_id(table)
    numbers = sorted(raw.persons)
    centroids = np.array(
        [centroid_of(table.embedding[[row_of[f] for f in raw.persons[n]]]) for n in numbers]
    ).reshape(len(numbers), table.embedding.shape[1])
    persons = [
        FacesetEntry("", n, [], photos=sorted({table.sha256[row_of[f]] for f in raw.persons[n]}))
        for n in numbers
    ]
    nearest, prevented = _nearest(
        table.embedding[new_rows],
        centroids,
        threshold,
        photo_of(table, new_rows, cannot_link),
        held_photos(persons),
    )
    joined = 0
    for row, index in zip(new_rows, nearest, strict=True):
        if index >= 0:
            raw.persons[numbers[index]].append(int(table.face_id[row]))
            joined += 1
    for number in raw.persons:
        raw.persons[number].sort()

    rest = new_rows[nearest < 0]
    components = None
    new_persons = new_singletons = 0
    if rest.size:
        result = linkage.cluster_average_linkage(
            table.embedding[rest],
            threshold,
            progress=linkage_progress(progress, "cluster"),
            photo=photo_codes_of(table, rest, cannot_link),
        )
        prevented += result.prevented
        first = max(raw.persons, default=0) + 1
        fresh = layout_from_labels(result.labels, table.face_id[rest], first_number=first)
        raw.persons.update(fresh.persons)
        raw.singletons = sorted(raw.singletons + fresh.singletons)
        new_persons, new_singletons = len(fresh.persons), len(fresh.singletons)
        components = components_json(result, table.face_id[rest])
    stats = {
        "new_faces": int(new_rows.size),
        "joined_persons": joined,
        "new_persons": new_persons,
        "new_singletons": new_singletons,
        "merges_prevented": prevented,
    }
    return stats, components


def _extend_refine(
    manifest: RefineManifest,
    table: FaceTable,
    rows: np.ndarray,
    threshold: float,
    cannot_link: bool,
) -> tuple[list[FacesetEntry], dict[str, int]]:
    """Facesets with the new faces that pass refine's quality gate and match a faceset."""
    assert table.embedding is not None
    facesets = [replace(entry) for entry in manifest.entries()]
    held: set[int] = set()
    for entry in facesets:
        held.update(entry.face_ids)
    for ids in manifest.rejected().values():
        held.update(ids)
    candidates = np.array([r for r in rows if int(table.face_id[r]) not in held], dtype=np.int64)
    gate = quality.recorded_gate(manifest.parameters or {})
    good = candidates[quality.passes(gate, table, candidates)] if candidates.size else candidates
    centroids = normalise(
        np.array([entry.centroid for entry in facesets], dtype=np.float32).reshape(
            len(facesets), table.embedding.shape[1]
        )
    )
    nearest, prevented = _nearest(
        table.embedding[good],
        centroids,
        threshold,
        photo_of(table, good, cannot_link),
        held_photos(facesets),
    )
    row_of = face_index_by_id(table)
    joined = 0
    for row, index in zip(good, nearest, strict=True):
        if index < 0:
            continue
        entry = facesets[index]
        entry.face_ids = sorted({*entry.face_ids, int(table.face_id[row])})
        entry.photos = sorted({table.sha256[row_of[f]] for f in entry.face_ids})
        joined += 1
    stats = {
        "candidate_faces": int(candidates.size),
        "below_quality": int(candidates.size - good.size),
        "joined_facesets": joined,
        "faceset_joins_prevented": prevented,
    }
    return facesets, stats


def extend(
    store: FaceStore,
    raw_out: Path,
    refine_out: Path | None = None,
    params: ExtendParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    """Add new faces to OUT of `cluster` (and of `refine`); link_mode None keeps each output's."""
    params = params or ExtendParams()
    threshold = params.threshold
    link_mode = params.link_mode.value if params.link_mode else None
    raw_out = Path(raw_out)
    raw_manifest = _load(raw_out, layout.CLUSTER_MANIFEST, store, "cluster", ClusterManifest)
    refine_manifest = (
        _load(Path(refine_out), layout.REFINE_MANIFEST, store, "refine", RefineManifest)
        if refine_out
        else None
    )
    raw_mode = check_link_mode(link_mode or str(raw_manifest.param("link_mode", "auto")))

    table, photos, rows = open_faces(store, roots, progress)

    raw = RawLayout.from_manifest(raw_manifest)
    held = raw.held()
    _check_known(held, table, raw_out / layout.CLUSTER_MANIFEST)
    new_rows = np.array([r for r in rows if int(table.face_id[r]) not in held], dtype=np.int64)
    raw_stats, components = _extend_raw(
        raw, table, new_rows, threshold, params.cannot_link, progress
    )

    wanted, sections = raw_outputs(raw, table, photos)
    before = raw_manifest.section("extend")
    block: dict[str, object] = {
        "threshold": float(threshold),
        "link_mode": raw_mode,
        "cannot_link": cannot_link_json(params.cannot_link, raw_stats["merges_prevented"]),
    }
    if not raw_stats["new_faces"] and "cannot_link" in before:
        block["cannot_link"] = before["cannot_link"]  # a re-run
    if components is not None:
        block["components"] = components
    elif "components" in before:
        block["components"] = before["components"]
    grown = sections.into(
        replace(raw_manifest, store_id=store.store_id, written=None, pending=None)
    )
    grown.extra = grown.extra | {"extend": block}
    raw_sync = sync_outputs(raw_out, layout.CLUSTER_MANIFEST, wanted, grown, raw_mode, progress)
    summary: dict[str, object] = {
        **raw_stats,
        "persons": len(raw.persons),
        "missing_photos": len(photos.missing_photos()),
        "missing_paths": len(photos.missing_paths),
        "changed_paths": len(photos.changed_paths),
        "raw": raw_sync.summary(),
    }

    if refine_manifest is not None and refine_out is not None:
        refine_out = Path(refine_out)
        faceset_ids = {f for e in refine_manifest.entries() for f in e.face_ids}
        _check_known(faceset_ids, table, refine_out / layout.REFINE_MANIFEST)
        facesets, refine_stats = _extend_refine(
            refine_manifest, table, rows, threshold, params.cannot_link
        )
        refine_mode = check_link_mode(link_mode or str(refine_manifest.param("link_mode", "auto")))
        extended: dict[str, object] = {
            "threshold": float(threshold),
            "cannot_link": cannot_link_json(
                params.cannot_link, refine_stats["faceset_joins_prevented"]
            ),
        }
        if not refine_stats["candidate_faces"] and "extend" in refine_manifest.extra:
            extended = refine_manifest.section("extend")  # a re-run changes nothing
        refined = replace(
            refine_manifest,
            store_id=store.store_id,
            facesets=facesets,
            written=None,
            pending=None,
        )
        refined.extra = refined.extra | {
            "missing_sources": photos.missing_report(),
            "extend": extended,
        }
        refine_sync = sync_outputs(
            refine_out,
            layout.REFINE_MANIFEST,
            faceset_files(facesets, photos),
            refined,
            refine_mode,
            progress,
        )
        summary.update(refine_stats)
        summary["refine"] = refine_sync.summary()
    log.info("extend done", raw_out=str(raw_out), **raw_stats)
    return JobOutcome(summary=summary, manifest_path=raw_out / layout.CLUSTER_MANIFEST)


Request = clustering_pb2.ExtendRequest


class Extend(ClusteringJob[Request, ExtendParams]):
    """The raw output and, when given, the refine output grow; neither is made here."""

    params = ExtendParams

    def writes(self, ctx: JobContext[Request], params: ExtendParams) -> Writes:
        raw_out = ctx.required(ctx.request.raw_out, "raw_out")
        refine_out = ctx.optional(ctx.request.refine_out, "refine_out")
        return Writes([raw_out, *([refine_out] if refine_out else [])])

    def run(self, ctx: JobContext[Request], params: ExtendParams) -> JobOutcome:
        raw_out = ctx.required(ctx.request.raw_out, "raw_out")
        refine_out = ctx.optional(ctx.request.refine_out, "refine_out")
        return extend(
            ctx.store, raw_out, refine_out, params, progress=ctx.progress, roots=ctx.roots
        )
