"""Maintenance runs: the files they move, recorded in the master manifest so any run can be put
back (`restore`). Nothing is deleted: PNGs move to faces/_dropped/, facesets to a quarantine
folder (_masked/, ...), and each move is one rename recorded as (src, dst) relative to OUT.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from facesets.contract import layout
from facesets.export.errors import ExportError
from facesets.export.fsz import write_fsz

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

    def as_dict(self) -> dict[str, Any]:
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
    def from_dict(cls, raw: Mapping[str, Any]) -> Move:
        return cls(
            src=str(raw["src"]),
            dst=str(raw["dst"]),
            kind=str(raw["kind"]),
            reason=str(raw.get("reason", "")),
            detail=str(raw.get("detail", "")),
            partition=str(raw.get("partition", "")),
            restored=bool(raw.get("restored", False)),
        )


@dataclass
class Run:
    kind: str  # "occlusion", ...
    parameters: dict[str, Any]
    id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6])
    started: float = field(default_factory=time.time)
    moves: list[Move] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "parameters": self.parameters,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "counts": self.counts,
            "moves": [m.as_dict() for m in self.moves],
        }


def read_manifest(out: Path) -> dict[str, Any]:
    path = out / layout.EXPORT_MANIFEST
    manifest = layout.read_json(path)
    if not isinstance(manifest, dict):
        raise ExportError(f"{out} holds no export: {path} is missing or not a manifest")
    return manifest


def write_manifest(out: Path, manifest: Mapping[str, Any]) -> None:
    layout.atomic_write_json(out / layout.EXPORT_MANIFEST, dict(manifest))


def runs_of(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    runs = manifest.get(layout.MAINTENANCE_RUNS)
    return list(runs) if isinstance(runs, list) else []


def rename(out: Path, src: str, dst: str) -> None:
    """One rename inside OUT; refuses to overwrite."""
    source, target = out / src, out / dst
    if target.exists():
        raise ExportError(f"cannot move {src} to {dst}: {dst} exists already")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, target)


def reprefix(value: Any, old: str, new: str) -> Any:
    """Every relative path under `old`/ in a manifest value, moved under `new`/."""
    if isinstance(value, str):
        return new + value[len(old) :] if value == old or value.startswith(old + "/") else value
    if isinstance(value, list):
        return [reprefix(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: reprefix(v, old, new) for k, v in value.items()}
    return value


# --- one faceset folder -------------------------------------------------------------------------


def crop_pngs(set_dir: Path) -> list[Path]:
    """The PNGs a faceset holds (faces/*.png, or crops/*.png in an export made before faces/;
    the _dropped/ folder below it excluded)."""
    return sorted(layout.faces_dir(set_dir).glob("*.png"))


def dropped_path(png_rel: str) -> str:
    """Where a PNG (relative to OUT) goes when a run drops it: _dropped/ beside it."""
    png = PurePosixPath(png_rel)
    return (png.parent / layout.DROPPED_DIR / png.name).as_posix()


def set_of(png_rel: str) -> str:
    """The faceset folder (relative to OUT) of a PNG in its faces/ (or legacy crops/) folder."""
    return PurePosixPath(png_rel).parent.parent.as_posix()


def _faceset_manifest(set_dir: Path) -> dict[str, Any]:
    manifest = layout.read_json(set_dir / layout.FACESET_MANIFEST, {})
    return manifest if isinstance(manifest, dict) else {}


def rebuild_fsz(out: Path, set_dir: Path) -> list[Path]:
    """Rewrite the faceset's .fsz files from the PNGs its faces folder holds now, best rank
    first; with no PNG left they are removed (they are derived and rebuilt on restore)."""
    manifest = _faceset_manifest(set_dir)
    ranks = {
        Path(str(c.get("file", ""))).name: int(c.get("rank", 0))
        for c in manifest.get("crops", [])
        if isinstance(c, dict)
    }
    pngs = sorted(crop_pngs(set_dir), key=lambda p: (ranks.get(p.name, 1 << 30), p.name))
    members = [(p.name, p.read_bytes()) for p in pngs]
    top_n = int((manifest.get("params") or {}).get("top_n") or len(members) or 1)
    written: list[Path] = []
    for key, count in (("fsz_top", top_n), ("fsz_all", len(members))):
        rel = manifest.get(key)
        if not isinstance(rel, str):
            continue
        path = set_dir / Path(rel).name
        if members:
            write_fsz(path, members[:count])
            written.append(path)
        else:
            path.unlink(missing_ok=True)
    return written


def note_dropped(set_dir: Path, move: Move, run_id: str) -> None:
    """The faceset manifest lists a dropped PNG under `dropped` (the report shows it there)."""
    manifest = _faceset_manifest(set_dir)
    if not manifest:
        return
    crops = [c for c in manifest.get("crops", []) if isinstance(c, dict)]
    record = next((c for c in crops if c.get("file") == move.src), {"file": move.src})
    manifest["crops"] = [c for c in crops if c is not record]
    dropped = {**record, "file": move.dst, "thumbnail": move.dst, "kept_file": move.src}
    dropped |= {"reason": move.reason, "detail": move.detail, "run": run_id}
    manifest["dropped"] = [*manifest.get("dropped", []), dropped]
    _write_counts(set_dir, manifest)


def note_restored(set_dir: Path, move: Move) -> None:
    manifest = _faceset_manifest(set_dir)
    if not manifest:
        return
    dropped = [d for d in manifest.get("dropped", []) if isinstance(d, dict)]
    record = next((d for d in dropped if d.get("file") == move.dst), None)
    if record is None:
        return
    manifest["dropped"] = [d for d in dropped if d is not record]
    crop = {k: v for k, v in record.items() if k not in {"thumbnail", "kept_file", "run"}}
    crop = {k: v for k, v in crop.items() if k not in {"reason", "detail"}} | {"file": move.src}
    crops = [*manifest.get("crops", []), crop]
    manifest["crops"] = sorted(crops, key=lambda c: (int(c.get("rank", 0)), str(c["file"])))
    _write_counts(set_dir, manifest)


def _write_counts(set_dir: Path, manifest: dict[str, Any]) -> None:
    counts = dict(manifest.get("counts") or {})
    counts["kept"] = len(manifest.get("crops", []))
    manifest["counts"] = counts
    layout.atomic_write_json(set_dir / layout.FACESET_MANIFEST, manifest)


def partitions(manifest: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(partition key, its mapping) for the faceset partitions a maintenance run touches."""
    for key in ("facesets", "masked", "thin_eras", "merged"):
        value = manifest.get(key)
        if isinstance(value, dict):
            yield key, value
