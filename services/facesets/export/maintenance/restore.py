"""`facesets restore EXPORT (--run ID | --faceset NAME)` and `occlusion --undo`: put back what
maintenance runs moved, newest move first; .fsz files are rebuilt from what the folder holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesets.contract import layout
from facesets.export.errors import ExportError
from facesets.export.maintenance import merge, runs
from facesets.export.maintenance.occlusion import move_entry, refresh_entry
from facesets.export.maintenance.runs import KIND_FILE, Move


@dataclass
class RestoreOutcome:
    runs: list[str] = field(default_factory=list)
    restored: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # moves that could not be put back


def last_run(out: Path, kind: str) -> str | None:
    """The newest run of `kind` with a move not yet restored."""
    for raw in reversed(runs.runs_of(runs.read_manifest(Path(out).absolute()))):
        moves = [Move.from_dict(m) for m in raw.get("moves", [])]
        if raw.get("kind") == kind and any(not m.restored for m in moves):
            return str(raw["id"])
    return None


def _concerns(move: Move, faceset: str) -> bool:
    names = {Path(move.src).name} if move.kind != KIND_FILE else set()
    first = move.src.split("/")[0]
    return faceset in names | {first, Path(runs.set_of(move.src)).name}


def restore(out: Path, *, run_id: str | None = None, faceset: str | None = None) -> RestoreOutcome:
    if (run_id is None) == (faceset is None):
        raise ExportError("restore needs exactly one of a run id or a faceset name")
    out = Path(out).absolute()
    manifest = runs.read_manifest(out)
    recorded = runs.runs_of(manifest)
    if run_id is not None and not any(r.get("id") == run_id for r in recorded):
        known = ", ".join(str(r.get("id")) for r in recorded) or "none"
        raise ExportError(f"no maintenance run {run_id!r} in {out} (runs: {known})")
    outcome = RestoreOutcome()
    touched: set[str] = set()
    for raw in reversed(recorded):
        moves = [Move.from_dict(m) for m in raw.get("moves", [])]
        if raw.get("kind") == merge.KIND:
            _restore_merge(out, manifest, raw, moves, run_id, faceset, outcome)
            continue
        chosen = [
            m
            for m in moves
            if not m.restored
            and (raw.get("id") == run_id if run_id is not None else _concerns(m, str(faceset)))
        ]
        for move in reversed(chosen):
            if not (out / move.dst).exists() or (out / move.src).exists():
                outcome.conflicts.append(f"{move.dst} -> {move.src}")
                continue
            runs.rename(out, move.dst, move.src)
            if move.kind == KIND_FILE:
                set_rel = runs.set_of(move.src)
                runs.note_restored(out / set_rel, move)
                touched.add(set_rel)
            else:
                move_entry(out, manifest, move.dst, move.src, move.partition, "facesets")
                touched.add(move.src)
            move.restored = True
            outcome.restored.append(move.as_dict())
        if chosen:
            raw["moves"] = [m.as_dict() for m in moves]
            outcome.runs.append(str(raw.get("id")))
    for set_rel in sorted(touched):
        runs.rebuild_fsz(out, out / set_rel)
        refresh_entry(out, manifest, set_rel)
    manifest[layout.MAINTENANCE_RUNS] = recorded
    runs.write_manifest(out, manifest)
    return outcome


def _restore_merge(
    out: Path,
    manifest: dict[str, Any],
    raw: dict[str, Any],
    moves: list[Move],
    run_id: str | None,
    faceset: str | None,
    outcome: RestoreOutcome,
) -> None:
    """A merge comes back whole (both facesets, their manifests and bundles) or not at all."""
    named = raw.get("parameters") or {}
    wanted = (
        raw.get("id") == run_id
        if run_id is not None
        else faceset in {named.get("faceset"), named.get("into")}
    )
    left = [m for m in moves if not m.restored]
    if not wanted or not left:
        return
    conflicts = merge.undo(out, manifest, moves)
    if conflicts:
        outcome.conflicts.extend(conflicts)
        return
    outcome.restored.extend(m.as_dict() for m in left)
    raw["moves"] = [m.as_dict() for m in moves]
    outcome.runs.append(str(raw.get("id")))
