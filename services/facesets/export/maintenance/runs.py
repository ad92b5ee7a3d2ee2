"""Maintenance runs: the files they move, recorded in the master manifest so any run can be put
back (`restore`). Nothing is deleted: PNGs move to faces/_dropped/, facesets to a quarantine
folder (_masked/, ...), and each move is one rename recorded as (src, dst) relative to OUT.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar, cast

from facesets.common.beneath import Beneath, UnsafePathError, parts_of, relative
from facesets.contract import layout
from facesets.contract.manifests import (
    ExportManifest,
    FacesetManifest,
    ManifestError,
    as_float,
    as_int,
)
from facesets.export.errors import ExportError
from facesets.export.fsz import fsz_bytes, member_name
from facesets.export.maintenance import journal

J = TypeVar("J")

KIND_FILE = "file"
KIND_FACESET = "faceset"


@dataclass
class Move:
    src: str  # relative to OUT
    dst: str
    kind: str  # KIND_FILE or KIND_FACESET
    reason: str
    detail: str = ""
    partition: str = ""  # the partition a moved faceset went to
    restored: bool = False

    def as_dict(self) -> dict[str, str | bool]:
        return {
            "src": self.src,
            "dst": self.dst,
            "kind": self.kind,
            "reason": self.reason,
            "detail": self.detail,
            "partition": self.partition,
            "restored": self.restored,
        }

    @classmethod
    def from_dict(cls, raw: object) -> Move:
        """A recorded move; both ends must be plain paths inside OUT (the manifest is a file
        anyone who can write the export may edit)."""
        if not isinstance(raw, Mapping):
            raise UnsafePathError(f"a recorded move is not an object: {raw!r}")
        return cls(
            src=relative(raw.get("src"), "a recorded move's src"),
            dst=relative(raw.get("dst"), "a recorded move's dst"),
            kind=str(raw["kind"]),
            reason=str(raw.get("reason", "")),
            detail=str(raw.get("detail", "")),
            partition=str(raw.get("partition", "")),
            restored=bool(raw.get("restored", False)),
        )


@dataclass
class Run:
    kind: str  # "occlusion", ...
    parameters: dict[str, object]
    id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6])
    started: float = field(default_factory=time.time)
    moves: list[Move] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "parameters": self.parameters,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "counts": self.counts,
            "moves": [m.as_dict() for m in self.moves],
        }


def read_manifest(out: Path) -> dict[str, object]:
    """OUT/manifest.json as written, whole (what a reader wanting every section gets)."""
    path = out / layout.EXPORT_MANIFEST
    try:
        manifest = Beneath(out).read_json(layout.EXPORT_MANIFEST)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not a readable manifest ({exc}); move it away") from exc
    if not isinstance(manifest, dict):
        raise ExportError(f"{out} holds no export: {path} is missing or not a manifest")
    return manifest


def read_export(out: Path) -> ExportManifest:
    """OUT/manifest.json as the model the maintenance jobs work on; ExportError naming the
    file and key when it is damaged."""
    path = out / layout.EXPORT_MANIFEST
    try:
        return ExportManifest.from_json(read_manifest(out), str(path))
    except ManifestError as exc:
        raise ExportError(str(exc)) from exc


def write_manifest(out: Path, manifest: ExportManifest) -> None:
    Beneath(out).write_json(layout.EXPORT_MANIFEST, manifest.to_json())


def guard(out: Path) -> None:
    """Refuse an export holding a symbolic link anywhere below it (a faceset, its faces/ or
    report/ linked elsewhere): nothing is read or moved through one. A maintenance job a crash
    cut short (its journal is still there) is rolled back first."""
    Beneath(out).refuse_links()
    journal.recover(out)


def guard_folders(out: Path, folders: Iterable[str]) -> None:
    """Refuse a symbolic link in the named folders of OUT (each walked; those missing are
    skipped). For jobs that touch only these folders: every access they make goes through
    Beneath, which follows no link on the way to them, so the rest of OUT is not walked."""
    disk = Beneath(out)
    for rel in sorted(set(folders) - {"", "."}):
        if disk.is_dir(rel):
            disk.refuse_links(rel)


def set_rel_of(entry: Mapping[str, object] | None, name: str) -> str:
    """The folder (relative to OUT) of a faceset's manifest entry: its `dir`, confined."""
    folder = entry.get("dir") if isinstance(entry, dict) else None
    return relative(folder or name, f"faceset {name}'s dir")


def runs_of(manifest: ExportManifest) -> list[object]:
    """The recorded maintenance runs, as written (restore checks each)."""
    runs = manifest.extra.get(layout.MAINTENANCE_RUNS)
    return list(runs) if isinstance(runs, list) else []


def record_run(manifest: ExportManifest, recorded: list[object], run: Run) -> ExportManifest:
    """The manifest with `run` last in its maintenance runs."""
    manifest.extra[layout.MAINTENANCE_RUNS] = [*recorded, run.as_dict()]
    return manifest


def rename(out: Path, src: str, dst: str) -> None:
    """One rename inside OUT (no link followed at either end); refuses to overwrite."""
    try:
        Beneath(out).rename(src, dst)
    except FileExistsError:
        raise ExportError(f"cannot move {src} to {dst}: {dst} exists already") from None


def reprefix(value: J, old: str, new: str) -> J:
    """Every relative path under `old`/ in a manifest value, moved under `new`/."""
    found: object = value
    if isinstance(value, str):
        found = new + value[len(old) :] if value == old or value.startswith(old + "/") else value
    elif isinstance(value, list):
        found = [reprefix(v, old, new) for v in value]
    elif isinstance(value, dict):
        found = {k: reprefix(v, old, new) for k, v in value.items()}
    return cast(J, found)  # the same shape: strings stay strings, lists lists, objects objects


# --- one faceset folder -------------------------------------------------------------------------


def faces_rel(out: Path, set_rel: str) -> str:
    """The folder of a faceset's PNGs: faces/, or crops/ in an export made before it."""
    disk = Beneath(out)
    faces, legacy = f"{set_rel}/{layout.CROPS_DIR}", f"{set_rel}/{layout.LEGACY_CROPS_DIR}"
    return legacy if not disk.is_dir(faces) and disk.is_dir(legacy) else faces


def crop_pngs(out: Path, set_rel: str) -> list[str]:
    """The PNGs a faceset holds (faces/*.png, or crops/*.png in an export made before faces/;
    the _dropped/ folder below it excluded), relative to OUT."""
    return Beneath(out).files(faces_rel(out, set_rel), ".png")


def dropped_path(png_rel: str) -> str:
    """Where a PNG (relative to OUT) goes when a run drops it: _dropped/ beside it."""
    png = PurePosixPath(png_rel)
    return (png.parent / layout.DROPPED_DIR / png.name).as_posix()


def set_of(png_rel: str) -> str:
    """The faceset folder (relative to OUT) of a PNG in its faces/ (or legacy crops/) folder."""
    return PurePosixPath(png_rel).parent.parent.as_posix()


def faceset_manifest(out: Path, set_rel: str) -> FacesetManifest | None:
    """A faceset's own manifest; None when it has none (or one that is not an object, as
    before: the maintenance jobs then leave that faceset's records alone)."""
    rel = f"{set_rel}/{layout.FACESET_MANIFEST}"
    try:
        manifest = Beneath(out).read_json(rel, {})
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{out / rel} is not a readable manifest ({exc}); move it away") from exc
    if not isinstance(manifest, dict) or not manifest:
        return None
    try:
        return FacesetManifest.from_json(manifest, str(out / rel))
    except ManifestError as exc:
        raise ExportError(str(exc)) from exc


def write_faceset_manifest(out: Path, set_rel: str, manifest: FacesetManifest) -> None:
    Beneath(out).write_json(f"{set_rel}/{layout.FACESET_MANIFEST}", manifest.to_json())


def bundle_members(out: Path, set_rel: str) -> list[tuple[str, bytes]]:
    """The faceset's PNGs as .fsz members, best rank first, each under a neutral name (its
    place in the bundle and a short hash of its bytes: no source folder is named)."""
    manifest = faceset_manifest(out, set_rel)
    ranks = {
        PurePosixPath(str(c.get("file", ""))).name: as_int(c.get("rank"), 0)
        for c in (manifest.crops if manifest else [])
    }
    disk = Beneath(out)
    pngs = sorted(
        crop_pngs(out, set_rel),
        key=lambda p: (ranks.get(PurePosixPath(p).name, 1 << 30), PurePosixPath(p).name),
    )
    datas = [disk.read_bytes(p) for p in pngs]
    return [(member_name(rank, data), data) for rank, data in enumerate(datas, start=1)]


def rebuild_fsz(out: Path, set_rel: str) -> list[str]:
    """Rewrite the faceset's .fsz files from the PNGs its faces folder holds now, best rank
    first; with no PNG left they are removed (they are derived and rebuilt on restore)."""
    manifest = faceset_manifest(out, set_rel)
    members = bundle_members(out, set_rel)
    top_n = (manifest.top_n() if manifest else 0) or len(members) or 1
    written: list[str] = []
    disk = Beneath(out)
    bundles = (manifest.fsz_top, manifest.fsz_all) if manifest else (None, None)
    for key, rel, count in zip(("fsz_top", "fsz_all"), bundles, (top_n, len(members)), strict=True):
        if rel is None:
            continue
        name = parts_of(rel, f"{set_rel}'s {key}")[-1]
        path = f"{set_rel}/{name}"
        if members:
            disk.write_bytes(path, fsz_bytes(members[:count]))
            written.append(path)
        else:
            disk.unlink(path)
    return written


def note_dropped(out: Path, set_rel: str, move: Move, run_id: str) -> None:
    """The faceset manifest lists a dropped PNG under `dropped` (the report shows it there)."""
    manifest = faceset_manifest(out, set_rel)
    if manifest is None:
        return
    crops = manifest.crops
    fallback: dict[str, object] = {"file": move.src}
    record = next((c for c in crops if c.get("file") == move.src), fallback)
    manifest.crops = [c for c in crops if c is not record]
    dropped = {**record, "file": move.dst, "thumbnail": move.dst, "kept_file": move.src}
    dropped |= {"reason": move.reason, "detail": move.detail, "run": run_id}
    manifest.dropped = [*manifest.dropped, dropped]
    write_counts(out, set_rel, manifest)


def note_restored(out: Path, set_rel: str, move: Move) -> None:
    manifest = faceset_manifest(out, set_rel)
    if manifest is None:
        return
    dropped = manifest.dropped
    record = next((d for d in dropped if d.get("file") == move.dst), None)
    if record is None:
        return
    manifest.dropped = [d for d in dropped if d is not record]
    crop = {k: v for k, v in record.items() if k not in {"thumbnail", "kept_file", "run"}}
    crop = {k: v for k, v in crop.items() if k not in {"reason", "detail"}} | {"file": move.src}
    crops = [*manifest.crops, crop]
    manifest.crops = sorted(crops, key=lambda c: (as_int(c.get("rank"), 0), str(c["file"])))
    write_counts(out, set_rel, manifest)


def write_counts(out: Path, set_rel: str, manifest: FacesetManifest) -> None:
    """The faceset's manifest written with its counts of kept and dropped crops as listed."""
    counts = dict(manifest.counts)
    counts["kept"] = len(manifest.crops)
    reasons: dict[str, int] = {}
    for record in manifest.dropped:
        reason = str(record.get("reason") or "dropped")
        reasons[reason] = reasons.get(reason, 0) + 1
    counts["dropped"] = dict(sorted(reasons.items()))  # the page header lists what is listed
    manifest.counts = counts
    write_faceset_manifest(out, set_rel, manifest)


def put_back_manifest(out: Path, log: journal.Journal, move: Move, brought: set[str]) -> None:
    """A faceset manifest a run saved, put back by its restore, with the crop records an export
    added since the run (in the manifest now, neither in the saved copy nor moved in by the
    run: their PNGs stay in faces/ and the .fsz), ranked by composite quality among the rest."""
    set_rel = parent_rel(move.src)
    current = faceset_manifest(out, set_rel)
    try:
        raw = Beneath(out).read_json(move.dst, {})
        saved = FacesetManifest.from_json(raw, move.dst) if isinstance(raw, dict) else None
    except ValueError:  # not JSON, or not a faceset manifest: put back as it is
        saved = None
    known = {str(c.get("file")) for c in (saved.crops if saved else [])} | brought
    since = [
        dict(c)
        for c in (current.crops if current and saved else [])
        if str(c.get("file")) not in known
    ]
    journal.rename(out, log, move.dst, move.src, replace=True)
    if not since:
        return
    restored = faceset_manifest(out, set_rel)
    if restored is None:
        return
    joined = sorted(
        enumerate([*restored.crops, *since]),
        key=lambda item: (-as_float(item[1].get("composite"), 0.0), item[0]),
    )
    top_n = restored.top_n()
    restored.crops = [
        crop | {"rank": rank, "in_top": rank <= top_n if top_n else True}
        for rank, (_, crop) in enumerate(joined, start=1)
    ]
    write_counts(out, set_rel, restored)


def partitions(manifest: ExportManifest) -> Iterator[tuple[str, dict[str, dict[str, object]]]]:
    """(partition key, its mapping) for the faceset partitions a maintenance run touches."""
    for key in ("facesets", "masked", "thin_eras", "merged"):
        if key in manifest.partitions:
            yield key, manifest.partitions[key]


def parent_rel(rel: str) -> str:
    return PurePosixPath(rel).parent.as_posix()
