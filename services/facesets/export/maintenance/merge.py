"""`facesets merge EXPORT FACESET --into TARGET`: two facesets a person judges to be one.

The source's PNGs (and their crop records) join the target's faces/ (a clashing name gets a
distinct one), the joined crops are ranked by quality as the export ranks them and the
target's .fsz files are rebuilt; the source folder moves whole to EXPORT/_merged/<name>/ and
its master-manifest entry to the `merged` partition (`into`: the target). Both faceset
manifests, as they were, are kept under EXPORT/_merged/.runs/<run>/ so that `restore` puts
every byte back. The run is recorded in `maintenance_runs` and as the `merge_run` block.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from facesets.common.beneath import Beneath
from facesets.contract import layout
from facesets.contract.export import MergeParams
from facesets.contract.manifests import ExportManifest, FacesetManifest, as_float, as_int
from facesets.export.errors import ExportError
from facesets.export.maintenance import journal, runs
from facesets.export.maintenance.occlusion import move_entry, refresh_entry
from facesets.export.maintenance.runs import KIND_FACESET, KIND_FILE, Move, Run

KIND = "merge"
PROVENANCE_KEY = "merge_run"
REASON = "merged"
MERGED_PARTITION = "merged"
FACESETS = "facesets"
KIND_SAVED = "saved_manifest"  # a faceset manifest the run rewrote, copied aside as it was
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


@dataclass
class MergeOutcome:
    run: Run
    dry_run: bool
    note: str = ""

    def summary(self) -> dict[str, object]:
        found = {
            "run": self.run.id,
            "dry_run": self.dry_run,
            "counts": self.run.counts,
            "moves": [m.as_dict() for m in self.run.moves],
        }
        return found | ({"note": self.note} if self.note else {})


def _partition_of(manifest: ExportManifest, name: str) -> tuple[str, dict[str, object]] | None:
    for key, entries in runs.partitions(manifest):
        entry = entries.get(name)
        if entry is not None:
            return key, entry
    for key, listed, entry in manifest.entries():  # era buckets and any other partition
        if listed == name and key != FACESETS and ("dir" in entry or "manifest" in entry):
            return key, entry
    return None


def _faceset_entry(manifest: ExportManifest, name: str, role: str, out: Path) -> dict[str, object]:
    found = _partition_of(manifest, name)
    if found is None:
        known = ", ".join(sorted(manifest.partitions.get(FACESETS, {}))) or "none"
        raise ExportError(f"no faceset {name!r} in {out} (facesets: {known})")
    key, entry = found
    if key != FACESETS:
        raise ExportError(
            f"{role} {name} is in the {key!r} partition, not in 'facesets': only facesets merge "
            f"(put it back first with `facesets restore {out} --faceset {name}`)"
        )
    return entry


def _names(record: dict[str, object], key: str) -> list[str]:
    """A list of names or paths a record holds under `key` ([] when none)."""
    value = record.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


def _distinct_name(name: str, taken: set[str], source: str) -> str:
    if name not in taken:
        return name
    stem, suffix = os.path.splitext(name)
    candidate = f"{stem}__{source}{suffix}"
    number = 2
    while candidate in taken:
        candidate = f"{stem}__{source}_{number}{suffix}"
        number += 1
    return candidate


def _read_inner(out: Path, set_rel: str) -> FacesetManifest | None:
    return runs.faceset_manifest(out, set_rel)


def _saved_rel(run_id: str, name: str) -> str:
    return f"{layout.MERGED_DIR}/{layout.MERGED_RUNS_DIR}/{run_id}/{name}.{layout.FACESET_MANIFEST}"


def merge(out: Path, params: MergeParams) -> MergeOutcome:
    out = Path(out).absolute()
    runs.guard(out)
    disk = Beneath(out)
    manifest = runs.read_export(out)
    run = Run(KIND, {"faceset": params.faceset, "into": params.into})
    done = manifest.partitions.get(MERGED_PARTITION, {}).get(params.faceset)
    if done is not None and done.get("into") == params.into:
        run.counts = {"pngs": 0, "renamed": 0}
        return MergeOutcome(run, params.dry_run, f"{params.faceset} is merged into {params.into}")
    source = _faceset_entry(manifest, params.faceset, "faceset", out)
    target = _faceset_entry(manifest, params.into, "target", out)
    source_rel = runs.set_rel_of(source, params.faceset)
    target_rel = runs.set_rel_of(target, params.into)
    for rel in (source_rel, target_rel):
        if not disk.is_file(f"{rel}/{layout.FACESET_MANIFEST}"):
            raise ExportError(f"{out / rel} holds no {layout.FACESET_MANIFEST}: not a faceset")
    if source_rel == target_rel:
        raise ExportError(f"{params.faceset} and {params.into} name one folder: {source_rel}")
    target_faces = runs.faces_rel(out, target_rel)
    taken = {name for name, _ in disk.entries(target_faces)}
    run.moves.append(
        Move(
            f"{target_rel}/{layout.FACESET_MANIFEST}",
            _saved_rel(run.id, params.into),
            KIND_SAVED,
            REASON,
        )
    )
    run.moves.append(
        Move(
            f"{source_rel}/{layout.FACESET_MANIFEST}",
            _saved_rel(run.id, params.faceset),
            KIND_SAVED,
            REASON,
        )
    )
    renamed = 0
    for src in runs.crop_pngs(out, source_rel):
        png_name = PurePosixPath(src).name
        name = _distinct_name(png_name, taken, params.faceset)
        taken.add(name)
        renamed += name != png_name
        dst = f"{target_faces}/{name}"
        run.moves.append(Move(src, dst, KIND_FILE, REASON, f"into {params.into}"))
    pngs = len(run.moves) - 2
    quarantine = f"{layout.MERGED_DIR}/{PurePosixPath(source_rel).name}"
    if disk.exists(quarantine):
        raise ExportError(f"cannot merge {params.faceset}: {out / quarantine} exists already")
    run.moves.append(
        Move(
            source_rel,
            quarantine,
            KIND_FACESET,
            REASON,
            f"{pngs} PNGs into {params.into}",
            MERGED_PARTITION,
        )
    )
    run.counts = {"pngs": pngs, "renamed": renamed}
    if not params.dry_run:
        _apply(out, run, params, source_rel, target_rel)
    return MergeOutcome(run, params.dry_run)


def _joined_crops(
    target: FacesetManifest, source: FacesetManifest | None, files: dict[str, str]
) -> list[dict[str, object]]:
    """The target's crop records and the source's (at their new paths), ranked best first by
    composite quality, the target's before the source's at equal quality."""
    own = [dict(c) for c in target.crops]
    joined = [
        dict(c) | {"file": files[str(c["file"])]}
        for c in (source.crops if source else [])
        if str(c.get("file")) in files
    ]
    ordered = sorted(
        enumerate([*own, *joined]),
        key=lambda item: (-as_float(item[1].get("composite"), 0.0), item[0]),
    )
    top_n = target.top_n()
    crops = []
    for rank, (_, crop) in enumerate(ordered, start=1):
        crop["rank"] = rank
        crop["in_top"] = rank <= top_n if top_n else True
        crops.append(crop)
    return crops


def _apply(out: Path, run: Run, params: MergeParams, source_rel: str, target_rel: str) -> None:
    manifest = runs.read_export(out)
    recorded = runs.runs_of(manifest)
    # Recorded before anything moves: a run cut short is still known to restore.
    runs.write_manifest(
        out, runs.record_run(replace(manifest, extra=dict(manifest.extra)), recorded, run)
    )
    target = _read_inner(out, target_rel)
    source = _read_inner(out, source_rel)
    disk = Beneath(out)
    saved = [m.dst for m in run.moves if m.kind == KIND_SAVED]
    # Before the first move: what a crash half-way needs to be rolled back (the saved copies
    # are new files, listed as absent).
    log = journal.begin(
        out,
        [
            layout.EXPORT_MANIFEST,
            f"{target_rel}/{layout.FACESET_MANIFEST}",
            f"{source_rel}/{layout.FACESET_MANIFEST}",
            *saved,
        ],
        [target_rel, source_rel],
        [
            *(journal.Rename(m.src, m.dst) for m in run.moves if m.kind == KIND_FILE),
            journal.Rename(source_rel, run.moves[-1].dst),
        ],
    )
    files: dict[str, str] = {}
    for move in run.moves:
        if move.kind == KIND_SAVED:
            if disk.exists(move.src):
                disk.write_bytes(move.dst, disk.read_bytes(move.src))
        elif move.kind == KIND_FILE:
            journal.rename(out, log, move.src, move.dst)
            files[move.src] = move.dst
    if target is not None:
        crops = _joined_crops(target, source, files)
        counts = dict(target.counts)
        source_counts = source.counts if source else {}
        faces = as_int(counts.get("faces"), 0) + as_int(source_counts.get("faces"), 0)
        counts["faces"] = faces
        counts["kept"] = len(crops)
        counts["top"] = min(target.top_n() or len(crops), len(crops))
        target.crops = crops
        target.counts = counts
        target.extra["merged_from"] = sorted({*_names(target.extra, "merged_from"), params.faceset})
        composites = [as_float(c["composite"], 0.0) for c in crops if "composite" in c]
        if composites and len(composites) == len(crops):
            target.extra["mean_quality"] = round(sum(composites) / len(composites), 6)
        sources = {
            *_names(target.extra, "sources"),
            *(_names(source.extra, "sources") if source else []),
        }
        target.extra["sources"] = sorted(sources)
        runs.write_faceset_manifest(out, target_rel, target)
    runs.rebuild_fsz(out, target_rel)
    refresh_entry(out, manifest, target_rel)
    entry = manifest.partitions.get(FACESETS, {}).get(params.into)
    if entry is not None and target is not None:
        for key in ("mean_quality", "sources"):
            if key in target.extra:
                entry[key] = target.extra[key]
        entry["merged_from"] = target.extra["merged_from"]

    quarantine = run.moves[-1].dst
    journal.rename(out, log, source_rel, quarantine)
    move_entry(out, manifest, source_rel, quarantine, FACESETS, MERGED_PARTITION)
    inner = _read_inner(out, quarantine)
    if inner is not None:
        moved = {runs.reprefix(src, source_rel, quarantine): dst for src, dst in files.items()}
        inner.crops = [
            c | {"file": moved.get(str(c.get("file")), c.get("file"))} for c in inner.crops
        ]
        inner.extra["merged_into"] = params.into
        runs.write_faceset_manifest(out, quarantine, inner)
    runs.rebuild_fsz(out, quarantine)  # its PNGs are gone: its bundles go with them
    refresh_entry(out, manifest, quarantine)
    gone = manifest.partitions.get(MERGED_PARTITION, {}).get(params.faceset)
    if gone is not None:
        gone["into"] = params.into
        gone["merged_into"] = params.into
        gone["top"] = [files.get(rel, rel) for rel in _names(gone, "top")]
    if inner is not None:
        inner = _read_inner(out, quarantine)
        if inner is not None:
            inner.fsz_top = inner.fsz_all = None
            runs.write_faceset_manifest(out, quarantine, inner)
    runs.record_run(manifest, recorded, run)
    manifest.extra[PROVENANCE_KEY] = run.as_dict()
    runs.write_manifest(out, manifest)
    journal.finish(out)


def undo(out: Path, manifest: ExportManifest, moves: list[Move], log: journal.Journal) -> None:
    """Put a merge run back, newest move first (restore checked every move can be made).
    Both faceset manifests come back as they were, the target's with the crops an export added
    since; the .fsz files are rebuilt."""
    disk = Beneath(out)
    folder = next(m for m in moves if m.kind == KIND_FACESET)
    if not folder.restored:
        journal.rename(out, log, folder.dst, folder.src)
        move_entry(out, manifest, folder.dst, folder.src, MERGED_PARTITION, FACESETS)
        entry = manifest.partitions.get(FACESETS, {}).get(PurePosixPath(folder.src).name)
        if entry is not None:
            for key in ("into", "merged_into"):
                entry.pop(key, None)
        folder.restored = True
    touched: list[str] = []
    brought = {m.dst for m in moves if m.kind == KIND_FILE}
    for move in reversed(moves):
        if move.restored:
            continue
        if move.kind == KIND_FILE:
            journal.rename(out, log, move.dst, move.src)
        elif move.kind == KIND_SAVED:
            set_rel = str(PurePosixPath(move.src).parent)
            runs.put_back_manifest(out, log, move, brought)
            touched.append(set_rel)
        move.restored = True
    saved = {str(PurePosixPath(m.dst).parent) for m in moves if m.kind == KIND_SAVED}
    for folder_rel in sorted(saved, reverse=True):  # the run's saved-manifest folder, if empty
        for empty in (folder_rel, str(PurePosixPath(folder_rel).parent)):
            if empty not in ("", "."):
                disk.rmdir(empty)
    for set_rel in touched:
        runs.rebuild_fsz(out, set_rel)
        refresh_entry(out, manifest, set_rel)
        entry = manifest.partitions.get(FACESETS, {}).get(PurePosixPath(set_rel).name)
        inner = _read_inner(out, set_rel)
        kept = inner.extra if inner is not None else {}
        if entry is not None:
            for key in ("mean_quality", "sources", "merged_from"):
                if key in kept:
                    entry[key] = kept[key]
                else:
                    entry.pop(key, None)
