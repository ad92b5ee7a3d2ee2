"""`facesets age split|extend EXPORT FACESET`: one exported identity split into eras.

Split: the centroid of the curated faceset seeds a wide recovery of the store's faces within
`recover_threshold` whose photo lies under one of the faceset's source folders; the quality
gate drops small, blurred and doubtful faces; one re-centroid keeps the faces within
`tighten_threshold`. Those faces are clustered (average linkage) at `sub_threshold`.

The anchor rule: a sub-cluster of at least `anchor_min_faces` faces is an anchor (an era of
its own). A smaller fragment joins its single nearest anchor only when the centroid distance
is at most `join_threshold` AND its dominant capture year lies within `era_years` of the
anchor's; otherwise it stays a standalone era. Fragments are compared with the anchors as
they were found, never with what joined them (no transitive merging: a chain of fragments
drifts across the years). A fragment without any dated photo cannot pass the year rule and
stays standalone.

Eras are named `<faceset>_era_NN` (earliest dominant year first). The plan goes to
EXPORT/_eras/<faceset>.json, shaped like a refine manifest for the export service, which
exports each era like a faceset: eras under `anchor_min_faces` faces go to EXPORT/_thin/ with
a THIN.txt, and the top-level manifest lists them under `thin_eras`, the others under `eras`.

Extend: faces recovered since the split (same roots, gate and recorded centroid) are clustered
among themselves and slot into existing anchors by the same rule; a new fragment of anchor
size, or one that joins no anchor, becomes a new era numbered past the largest. Nothing is
renumbered. An extend that changes the plan appends a block to the top-level manifest's
`age_extend_runs` (parameters, faces slotted per era, time); one that finds nothing new
changes nothing.

Capture years come from the store (`images.capture_time`, read once per photo from EXIF at
ingestion); photos without one are reported, never guessed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import structlog

from facesets.clustering.jobs import quality
from facesets.clustering.jobs.context import ClusteringJob, JobContext, Writes
from facesets.clustering.jobs.eras import (
    ERA_NAME,
    PARTITION_ERAS,
    PARTITION_THIN,
    THIN_MARKER,
    curated_rows,
    dominant_year,
    photo_years,
    read_curated,
    subclusters,
    year_spread,
)
from facesets.clustering.jobs.job import (
    JobError,
    JobOutcome,
    Photos,
    ProgressFn,
    centroid_of,
    check_made_from,
    face_index_by_id,
    model_identity,
    report,
    store_identity,
    unusable_manifest,
    usable_faces,
    vector_json,
)
from facesets.clustering.jobs.materialize import write_json_if_changed
from facesets.clustering.store import FaceStore, FaceTable
from facesets.common.roots import Roots
from facesets.contract import layout
from facesets.contract.clustering import AgeSplitParams
from facesets.contract.manifests import Decision, EraEntry, EraPlan, ExportManifest, ManifestError
from facesets.contract.quality import QualityGate
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)

COMMAND = "age split"


# --- shared with the probe ----------------------------------------------------------------------


# --- the split ----------------------------------------------------------------------------------


def _under(paths: Iterable[str], roots: Sequence[str]) -> bool:
    return any(
        os.path.abspath(p).startswith(root.rstrip(os.sep) + os.sep) for p in paths for root in roots
    )


def _recover(
    table: FaceTable,
    photos: Photos,
    rows: np.ndarray,
    roots: Sequence[str],
    centroid: np.ndarray,
    threshold: float,
    gate: QualityGate,
) -> tuple[np.ndarray, dict[str, int]]:
    """Rows under the roots within threshold of the centroid that pass the quality gate."""
    assert table.embedding is not None
    under = np.array(
        [r for r in rows if _under(photos.existing.get(table.sha256[r], []), roots)],
        dtype=np.int64,
    )
    if under.size == 0:
        return under, {"under_roots": 0, "within": 0, "passed_gate": 0}
    near = under[1.0 - table.embedding[under] @ centroid <= threshold]
    good = near[quality.passes(gate, table, near)] if near.size else near
    return good, {
        "under_roots": int(under.size),
        "within": int(near.size),
        "passed_gate": int(good.size),
    }


@dataclass
class _Group:
    rows: np.ndarray
    centroid: np.ndarray
    year: int | None


def _groups(
    table: FaceTable, rows: np.ndarray, years: list[int | None], threshold: float
) -> list[_Group]:
    """Sub-clusters of rows at threshold, largest first (ties by smallest face id)."""
    assert table.embedding is not None
    labels = subclusters(
        table.embedding[rows], threshold, np.array([table.sha256[r] for r in rows])
    )
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(int(label), []).append(index)
    groups = []
    for members in by_label.values():
        local = np.array(members, dtype=np.int64)
        groups.append(
            _Group(
                rows[local],
                centroid_of(table.embedding[rows[local]]),
                dominant_year(years[i] for i in members),
            )
        )
    groups.sort(key=lambda g: (-len(g.rows), int(table.face_id[g.rows].min())))
    return groups


@dataclass
class _Anchor:
    name: str | None  # None until numbered (split); an existing era's name (extend)
    centroid: np.ndarray
    year: int | None
    face_ids: list[int]
    joined: list[Decision]


def _apply_anchor_rule(
    fragment: _Group,
    anchors: Sequence[_Anchor],
    params: AgeSplitParams,
    table: FaceTable,
) -> tuple[int | None, Decision]:
    """The anchor a fragment joins (index) or None, with the decision as the plan records it."""
    record: Decision = {
        "faces": int(len(fragment.rows)),
        "first_face_id": int(table.face_id[fragment.rows].min()),
        "year": fragment.year,
    }
    if not anchors:
        return None, record | {"decision": "standalone", "why": "no anchor"}
    distances = np.array([1.0 - float(a.centroid @ fragment.centroid) for a in anchors])
    nearest = int(np.argmin(distances))
    anchor = anchors[nearest]
    record |= {"nearest_anchor_distance": round(float(distances[nearest]), 4)}
    if distances[nearest] > params.join_threshold:
        why = f"centroid distance {distances[nearest]:.3f} > {params.join_threshold:.2f}"
        return None, record | {"decision": "standalone", "why": why}
    if fragment.year is None or anchor.year is None:
        return None, record | {"decision": "standalone", "why": "no capture year to compare"}
    if abs(fragment.year - anchor.year) > params.era_years:
        why = f"dominant year {fragment.year} vs anchor's {anchor.year}: > {params.era_years} years"
        return None, record | {"decision": "standalone", "why": why}
    return nearest, record | {"decision": "joined"}


def _era_entry(
    name: str,
    number: int,
    face_ids: list[int],
    years_of: dict[int, int | None],
    params: AgeSplitParams,
    faceset: str,
    anchor: _Anchor | None,
) -> EraEntry:
    spread = year_spread([years_of[f] for f in face_ids])
    thin = len(face_ids) < params.anchor_min_faces
    first, last = spread["first"], spread["last"]
    span = (
        "no capture years"
        if first is None
        else (f"{first}" if first == last else f"{first}-{last}")
    )
    text = (
        f"{name}: an era of {faceset}, capture years {span}"
        f" (dominant {spread['dominant'] or 'unknown'}); {len(face_ids)} faces,"
        f" {spread['undated']} without a capture date\n"
    )
    markers = {f"{name}.txt": text}
    if thin:
        markers[THIN_MARKER] = (
            f"{name} holds {len(face_ids)} faces, fewer than {params.anchor_min_faces}:"
            " too thin to stand as a faceset; kept for review\n"
        )
    return EraEntry(
        name=name,
        number=number,
        dir=f"{layout.THIN_DIR}/{name}" if thin else name,
        partition=PARTITION_THIN if thin else PARTITION_ERAS,
        group=faceset,
        face_ids=sorted(face_ids),
        years=spread,
        label=span,
        markers=markers,
        anchor=anchor is not None,
        anchor_centroid=None if anchor is None else vector_json(anchor.centroid),
        anchor_year=None if anchor is None else anchor.year,
        joined=[] if anchor is None else anchor.joined,
    )


def _plan_path(export_dir: Path, name: str) -> Path:
    return layout.era_plan_path(export_dir, name)


def age_split(
    store: FaceStore,
    export_dir: Path,
    faceset: str,
    params: AgeSplitParams | None = None,
    *,
    extend: bool = False,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    """Write (or, with dry_run, only report) the era plan of one exported faceset."""
    params = params or AgeSplitParams()
    export_dir = Path(export_dir)
    curated = read_curated(export_dir, faceset, store)
    plan_path = _plan_path(export_dir, curated.name)
    try:
        previous = EraPlan.read(plan_path)
    except ManifestError as exc:
        raise unusable_manifest(exc) from exc
    if extend and previous is None:
        raise JobError(f"{curated.name} has no era plan in {export_dir}; run `age split` first")
    if previous is not None:
        check_made_from(previous, store, plan_path)

    report(progress, "load", 0, 1)
    table = store.face_table(with_embeddings=True)
    assert table.embedding is not None
    photos = Photos.scan(store, roots)
    usable = usable_faces(table, photos)
    years_by_photo = photo_years(photos)
    report(progress, "load", 1, 1)

    gate = params.gate
    seed_rows = curated_rows(curated, table, usable)
    seed = centroid_of(table.embedding[seed_rows])
    folders = list(previous.roots or curated.roots) if extend and previous else curated.roots
    if extend and previous is not None:
        centroid = np.asarray(previous.centroid, dtype=np.float32)
        recovery: dict[str, int] = {}
    else:
        wide, recovery = _recover(
            table, photos, usable, folders, seed, params.recover_threshold, gate
        )
        if wide.size == 0:
            raise JobError(f"no face of {curated.name} passes the gate under {folders}")
        centroid = centroid_of(table.embedding[wide])
    tight, tight_counts = _recover(
        table, photos, usable, folders, centroid, params.tighten_threshold, gate
    )
    recovery["tightened"] = tight_counts["passed_gate"]
    if (
        not extend
        and tight.size
        and all(years_by_photo.get(table.sha256[r]) is None for r in tight)
    ):
        # Eras are made from capture years: with none known there is nothing to split by.
        raise JobError(
            f"{curated.name} cannot be split by age: none of the photos of its {tight.size} "
            f"faces under {', '.join(folders)} has a capture date (EXIF DateTimeOriginal)"
        )
    report(progress, "recover", 1, 1)

    eras = [replace(e) for e in previous.facesets] if extend and previous else []
    held = {f for e in eras for f in e.face_ids}
    todo = np.array([r for r in tight if int(table.face_id[r]) not in held], dtype=np.int64)
    years = [years_by_photo.get(table.sha256[r]) for r in todo]
    groups = _groups(table, todo, years, params.sub_threshold)
    report(progress, "subclusters", 1, 1)

    anchors: list[_Anchor] = [
        _Anchor(
            e.name,
            np.asarray(e.anchor_centroid or [], np.float32),
            e.anchor_year,
            list(e.face_ids),
            list(e.joined),
        )
        for e in eras
        if e.anchor
    ]
    existing_anchors = len(anchors)
    new_anchors = [g for g in groups if len(g.rows) >= params.anchor_min_faces]
    anchors += [
        _Anchor(None, g.centroid, g.year, [int(f) for f in table.face_id[g.rows]], [])
        for g in new_anchors
    ]
    standalone: list[_Group] = []
    decisions: list[Decision] = []
    for group in groups:
        if len(group.rows) >= params.anchor_min_faces:
            continue
        index, record = _apply_anchor_rule(group, anchors, params, table)
        decisions.append(record)
        if index is None:
            standalone.append(group)
        else:
            anchor = anchors[index]
            anchor.face_ids += [int(f) for f in table.face_id[group.rows]]
            anchor.joined.append(record)

    row_of = face_index_by_id(table)
    years_of: dict[int, int | None] = {}
    for face_id in {int(f) for f in table.face_id[tight]} | held:
        row = row_of.get(face_id)
        years_of[face_id] = None if row is None else years_by_photo.get(table.sha256[row])

    # Existing eras keep their names and numbers; new ones follow, earliest year first.
    by_name = {e.name: e for e in eras}
    for anchor in anchors[:existing_anchors]:
        old = by_name[str(anchor.name)]
        by_name[old.name] = _era_entry(
            old.name, old.number, anchor.face_ids, years_of, params, curated.name, anchor
        )
    fresh: list[tuple[list[int], _Anchor | None, int | None]] = [
        (a.face_ids, a, a.year) for a in anchors[existing_anchors:]
    ] + [([int(f) for f in table.face_id[g.rows]], None, g.year) for g in standalone]
    fresh.sort(key=lambda item: (item[2] is None, item[2] or 0, -len(item[0]), min(item[0])))
    number = max((e.number for e in eras), default=0)
    for face_ids, found, _ in fresh:
        number += 1
        name = ERA_NAME.format(curated.name, number)
        by_name[name] = _era_entry(name, number, face_ids, years_of, params, curated.name, found)
    result = sorted(by_name.values(), key=lambda e: e.number)

    undated = sorted(
        {
            photos.rows[table.sha256[row_of[f]]].path
            for e in result
            for f in e.face_ids
            if f in row_of and years_by_photo.get(table.sha256[row_of[f]]) is None
        }
    )
    plan = EraPlan(
        command=COMMAND,
        faceset=curated.name,
        model=model_identity(store),
        store=store_identity(store),
        store_id=store.store_id,
        parameters={k: v for k, v in params.recorded().items() if k != "dry_run"},
        roots=folders,
        seed_centroid=previous.seed_centroid if extend and previous else vector_json(seed),
        centroid=vector_json(centroid),
        facesets=result,
        fragments=[*previous.fragments, *decisions] if extend and previous else decisions,
        no_capture_time=undated,
    )
    changed = previous is None or plan.to_json() != previous.to_json()
    written = False
    if not params.dry_run:
        written = write_json_if_changed(plan_path, plan.to_json())
    slotted = _slotted(eras, result)
    if extend and written:
        _record_extend_run(export_dir, plan, plan_path, int(todo.size), slotted)
    summary: dict[str, object] = {
        "faceset": curated.name,
        "plan": str(plan_path),
        "dry_run": params.dry_run,
        "changed": changed,
        "plan_written": written,
        **recovery,
        "new_faces": int(todo.size),
        **({"slotted": slotted} if extend else {}),
        "subclusters": [int(len(g.rows)) for g in groups],
        "anchors": sum(1 for e in result if e.anchor),
        "eras": {
            e.name: {
                "faces": len(e.face_ids),
                "years": e.label,
                "thin": e.partition == PARTITION_THIN,
            }
            for e in result
        },
        "fragments": decisions,
        "no_capture_time": len(undated),
        "no_capture_time_photos": undated[:20],
    }
    log.info("age split done", faceset=curated.name, eras=len(result), extend=extend)
    return JobOutcome(summary=summary, manifest_path=None if params.dry_run else plan_path)


def _slotted(before: Sequence[EraEntry], after: Sequence[EraEntry]) -> dict[str, int]:
    """Faces each era gained (new eras included), by era name; eras that gained none left out."""
    held = {e.name: set(e.face_ids) for e in before}
    gained = {e.name: len(set(e.face_ids) - held.get(e.name, set())) for e in after}
    return {name: count for name, count in gained.items() if count}


def _record_extend_run(
    export_dir: Path, plan: EraPlan, plan_path: Path, new_faces: int, slotted: dict[str, int]
) -> None:
    """One `age_extend_runs` block in the top-level manifest (read, appended, written whole)."""
    top_path = export_dir / layout.EXPORT_MANIFEST
    try:
        top = ExportManifest.read(top_path) or ExportManifest()
    except ManifestError as exc:
        raise JobError(f"{exc}: not an export manifest") from exc
    block = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "faceset": plan.faceset,
        "plan": plan_path.relative_to(export_dir).as_posix(),
        "parameters": dict(plan.parameters),
        "counts": {
            "new_faces": new_faces,
            "slotted": sum(slotted.values()),
            "per_era": slotted,
            "eras": len(plan.facesets),
        },
    }
    top.extra[layout.AGE_EXTEND_RUNS] = [*top.runs(layout.AGE_EXTEND_RUNS), block]
    top.write(top_path)


def age_extend(
    store: FaceStore,
    export_dir: Path,
    faceset: str,
    params: AgeSplitParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    return age_split(
        store, export_dir, faceset, params, extend=True, progress=progress, roots=roots
    )


Request = clustering_pb2.AgeSplitRequest


class AgeSplit(ClusteringJob[Request, AgeSplitParams]):
    """The era plan and thin eras go into the export (a dry run writes nothing)."""

    params = AgeSplitParams
    extend = False

    def writes(self, ctx: JobContext[Request], params: AgeSplitParams) -> Writes:
        export_dir = ctx.required(ctx.request.export_dir, "export_dir")
        return Writes() if params.dry_run else Writes([export_dir])

    def run(self, ctx: JobContext[Request], params: AgeSplitParams) -> JobOutcome:
        export_dir = ctx.required(ctx.request.export_dir, "export_dir")
        faceset = ctx.faceset(ctx.request.faceset)
        return age_split(
            ctx.store,
            export_dir,
            faceset,
            params,
            extend=self.extend,
            progress=ctx.progress,
            roots=ctx.roots,
        )


class AgeExtend(AgeSplit):
    """New photos of a split identity slotted into its eras, nothing renumbered."""

    extend = True
