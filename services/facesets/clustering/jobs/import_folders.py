"""`import-folders`: hand-sorted folders as identities, mixed folders routed to them.

Each trusted folder is one identity, whatever the clustering would say. Its centroid comes from
two passes of outlier rejection (faces farther than the first threshold from the centroid of
all its faces go, the centroid is recomputed, then the second threshold), so the bystanders of
group photos drop out; under cannot-link each photo gives at most one face, the one nearest the
centroid, however near its bystanders are. A folder whose kept faces cluster into two people
is flagged (`mixed` in its summary, a `mixed-people` flag on its faceset). Every face of a
mixed folder then joins every identity whose centroid lies within the match threshold: a group
photo may feed several facesets, each with its own face of it. The plan is a refine manifest
in EXPORT/.import-folders/ (the export service exports it); a label keeps its number across
runs, new labels are numbered past the export's maximum (or from `first_number`). Re-running
with the same store and folders changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from facesets.clustering import linkage
from facesets.clustering.jobs.context import ClusteringJob, JobContext, Writes
from facesets.clustering.jobs.facesets import faceset_entry
from facesets.clustering.jobs.folder_checks import Purity, folder_purity, nearest_per_photo
from facesets.clustering.jobs.identities import ExportView, photos_under, read_plan
from facesets.clustering.jobs.job import (
    JobError,
    JobOutcome,
    ProgressFn,
    centroid_of,
    check_made_from,
    model_identity,
    open_faces,
    photo_of,
    report,
    sorted_ids,
    store_identity,
    vector_json,
)
from facesets.clustering.jobs.raw import cannot_link_json
from facesets.clustering.store import FaceStore, FaceTable
from facesets.common.roots import Roots
from facesets.contract import layout
from facesets.contract.clustering import ImportFoldersParams, nested_trusted
from facesets.contract.manifests import FacesetEntry, RefineManifest
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)

# A label names files (`<label>_all.fsz`, `<label>.txt`): letters, digits, space, _ . -
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
MIXED_FLAG = "mixed-people"  # on a faceset whose hand-sorted folder holds two people (report)


@dataclass(frozen=True)
class Trusted:
    label: str
    folder: Path


def check_trusted(trusted: Sequence[Trusted]) -> None:
    """Labels that can name files, each given once; folders apart from one another (a folder
    inside another would put its photos in both identities)."""
    seen: set[str] = set()
    for item in trusted:
        if not LABEL.match(item.label) or item.label.endswith((".", " ")):
            raise JobError(
                f"label {item.label!r} of {item.folder}: use letters, digits, spaces, "
                "'_', '.' or '-' (at most 64, starting with a letter or digit)"
            )
        if item.label.lower() in seen:
            raise JobError(f"label {item.label!r} is given twice")
        seen.add(item.label.lower())
    nested = nested_trusted([(item.label, item.folder) for item in trusted])
    if nested is not None:
        raise JobError(nested)


def identity_rows(
    table: FaceTable, rows: np.ndarray, first: float, second: float, one_per_photo: bool
) -> tuple[np.ndarray, list[int], int]:
    """The rows that survive both passes, the count left after each pass, and how many faces
    the one-face-per-photo rule dropped (when on: of a photo's faces only the nearest stays)."""
    assert table.embedding is not None
    kept = rows
    left: list[int] = []
    same_photo = 0
    for threshold in (first, second):
        if not kept.size:
            left.append(0)
            continue
        centroid = centroid_of(table.embedding[kept])
        kept = kept[1.0 - table.embedding[kept] @ centroid <= threshold]
        if one_per_photo and kept.size:
            photos = [table.sha256[r] for r in kept]
            before = int(kept.size)
            kept = nearest_per_photo(kept, table.embedding[kept], photos, centroid)
            same_photo += before - int(kept.size)
        left.append(int(kept.size))
    return kept, left, same_photo


def import_folders(
    store: FaceStore,
    export: Path,
    trusted: Sequence[Trusted],
    mixed: Sequence[Path],
    params: ImportFoldersParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    """Plan one faceset per trusted folder into EXPORT/.import-folders/ (see above)."""
    p = params or ImportFoldersParams()
    if not trusted:
        raise JobError("no trusted folders: name at least one with its label")
    check_trusted(trusted)
    export = Path(export)
    plan_path = export / layout.IMPORT_FOLDERS_DIR / layout.REFINE_MANIFEST
    plan = read_plan(plan_path)
    if plan is not None:
        check_made_from(plan, store, plan_path.parent)
    table, photos, rows = open_faces(store, roots, progress)
    assert table.embedding is not None

    previous = {str(e.extra.get("label")): e for e in plan.entries()} if plan else {}
    view = ExportView.read(export)
    own = {e.number for e in previous.values()}
    taken = view.numbers | own
    next_number = p.first_number or view.max_number + 1

    # 1. One identity per trusted folder.
    identities: list[tuple[Trusted, int, np.ndarray, np.ndarray]] = []
    folders: list[dict[str, object]] = []
    purities: dict[str, Purity] = {}
    for done, item in enumerate(trusted, start=1):
        in_folder = photos_under(photos, item.folder)
        folder_rows = rows[[table.sha256[r] in in_folder for r in rows]] if rows.size else rows
        kept, left, same_photo = identity_rows(
            table, folder_rows, p.first_pass_threshold, p.second_pass_threshold, p.cannot_link
        )
        purity = folder_purity(table.embedding[kept], [table.sha256[r] for r in kept])
        record: dict[str, object] = {
            "label": item.label,
            "folder": str(item.folder),
            "photos": len(in_folder),
            "faces": int(folder_rows.size),
            "after_first_pass": left[0],
            "after_second_pass": left[1],
            "same_photo_dropped": same_photo,  # bystanders: a photo gives one face at most
            **purity.as_json(),
        }
        purities[item.label] = purity
        if kept.size:
            if item.label in previous:
                number = previous[item.label].number
            else:
                while next_number in taken:
                    if p.first_number:
                        raise JobError(
                            f"faceset {next_number} already exists in {export}; "
                            "give another first_number (or none: past the maximum)"
                        )
                    next_number += 1
                number = next_number
                taken.add(number)
            record["number"] = number
            identities.append((item, number, kept, centroid_of(table.embedding[kept])))
        folders.append(record)
        report(progress, "identities", done, len(trusted))

    # 2. Faces of mixed folders join every identity within the match threshold.
    mixed_photos: set[str] = set().union(*(photos_under(photos, f) for f in mixed))
    mixed_rows = rows[[table.sha256[r] in mixed_photos for r in rows]] if rows.size else rows
    joined: dict[int, list[int]] = {number: [] for _, number, _, _ in identities}
    prevented = 0
    if identities and mixed_rows.size:
        # Each identity on its own (a face may join several): under cannot-link, a face does
        # not join an identity whose folder holds its photo, and of two faces of one photo
        # only the closer joins (route's nearest-centroid rule, one centroid at a time).
        mixed_emb = table.embedding[mixed_rows]
        photo = photo_of(table, mixed_rows, p.cannot_link)
        for _, number, kept, centroid in identities:
            kept_photos = np.asarray(sorted({table.sha256[r] for r in kept}), dtype=str)
            held = (np.zeros(kept_photos.size, np.int64), kept_photos.reshape(-1))
            found = linkage.assign_nearest(
                mixed_emb,
                centroid[None, :],
                p.match_threshold,
                photo=photo,
                held=held if photo is not None else None,
            )
            prevented += found.prevented
            joined[number] = [int(r) for r in mixed_rows[found.rows >= 0]]
    report(progress, "route", 1, 1)
    photo_sets: dict[str, set[int]] = {}
    for number, joined_rows in joined.items():
        for row in joined_rows:
            photo_sets.setdefault(table.sha256[row], set()).add(number)

    entries: dict[str, FacesetEntry] = {
        label: entry for label, entry in previous.items() if label not in {t.label for t in trusted}
    }
    for item, number, kept, centroid in identities:
        members = sorted_ids(table.face_id[[*kept, *joined[number]]])
        entry = faceset_entry(number, members, table)
        purity = purities[item.label]
        mixed_note = (
            f"looks like more than one person: its faces form clusters of "
            f"{' + '.join(str(c) for c in purity.clusters[:5])} (purity {purity.share:.2f})\n"
            if purity.mixed
            else ""
        )
        entry.extra = {
            "label": item.label,
            "bundle": item.label,  # the export names the .fsz bundles after it
            "folder": str(item.folder),
            "identity_centroid": vector_json(centroid),
            "from_mixed": sorted_ids(table.face_id[joined[number]]),
            "markers": {
                layout.LABEL_MARKER.format(item.label): (
                    f"{item.label}\nhand-sorted folder: {item.folder}\n"
                    f"faces from mixed folders: {len(joined[number])}\n{mixed_note}"
                )
            },
            "purity": round(purity.share, 2),
            **({"flags": [MIXED_FLAG]} if purity.mixed else {}),
        }
        entries[item.label] = entry
    for record in folders:
        made = record.get("number")
        if isinstance(made, int):
            record["from_mixed"] = len(joined[made])
    facesets = sorted(entries.values(), key=lambda e: e.number)
    recorded = {k: v for k, v in p.recorded().items() if k != "dry_run"}
    manifest = RefineManifest(
        command="import-folders",
        facesets=facesets,
        store=store_identity(store),
        store_id=store.store_id,
        model=model_identity(store),
        parameters=recorded | {"mixed": sorted(str(f) for f in mixed)},
    )
    changed = plan is None or manifest.to_json() != plan.to_json()
    if changed and not p.dry_run:
        manifest.write(plan_path)
    summary = {
        "folders": folders,
        "empty_folders": [r["label"] for r in folders if "number" not in r],
        "mixed_faces": int(mixed_rows.size),
        "mixed_faces_joined": sum(
            1 for r in mixed_rows if any(int(r) in j for j in joined.values())
        ),
        "mixed_photos_in_several": sum(1 for n in photo_sets.values() if len(n) > 1),
        # Hand-sorted folders whose faces look like more than one person: check them.
        "mixed_people_folders": [r["label"] for r in folders if r.get("mixed")],
        "cannot_link": cannot_link_json(p.cannot_link, prevented),
        "numbers": {str(e.extra["label"]): e.number for e in facesets},
        "changed": changed,
        "dry_run": p.dry_run,
    }
    log.info("import-folders done", identities=len(identities), changed=changed)
    return JobOutcome(summary=summary, manifest_path=None if p.dry_run else plan_path)


Request = clustering_pb2.ImportFoldersRequest


class ImportFolders(ClusteringJob[Request, ImportFoldersParams]):
    """A dry run writes nothing; otherwise the plan goes into EXPORT/.import-folders/."""

    params = ImportFoldersParams

    def writes(self, ctx: JobContext[Request], params: ImportFoldersParams) -> Writes:
        export = ctx.required(ctx.request.export, "export")
        return Writes() if params.dry_run else Writes([export / layout.IMPORT_FOLDERS_DIR], True)

    def run(self, ctx: JobContext[Request], params: ImportFoldersParams) -> JobOutcome:
        export = ctx.required(ctx.request.export, "export")
        trusted = [
            Trusted(t.label, ctx.required(t.folder, f"trusted folder of {t.label!r}"))
            for t in ctx.request.trusted
        ]
        mixed = [ctx.required(m, "mixed folder") for m in ctx.request.mixed]
        return import_folders(
            ctx.store, export, trusted, mixed, params, progress=ctx.progress, roots=ctx.roots
        )
