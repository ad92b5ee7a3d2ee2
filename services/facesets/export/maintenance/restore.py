"""`facesets restore EXPORT (--run ID | --faceset NAME)` and `occlusion --undo`: put back what
maintenance runs moved, newest move first; .fsz files are rebuilt from what the folder holds.

All or nothing: every move is checked before the first is made (both ends inside the export,
the file still there, its old place free, no later run that moved the same files left in
place), and a journal lets the next job roll back a restore a crash cut short. Only the
folders the chosen moves touch are checked for symbolic links (walking a whole export of
40,000 files made every undo slow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from facesets.common.beneath import Beneath, UnsafePathError
from facesets.contract import layout
from facesets.export.errors import ExportError
from facesets.export.maintenance import journal, merge, review_actions, runs
from facesets.export.maintenance.occlusion import move_entry, refresh_entry
from facesets.export.maintenance.runs import KIND_FACESET, KIND_FILE, Move


@dataclass
class RestoreOutcome:
    runs: list[str] = field(default_factory=list)
    restored: list[dict[str, str | bool]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # moves that could not be put back


def last_run(out: Path, kind: str) -> str | None:
    """The newest run of `kind` with a move not yet restored."""
    recorded = runs.runs_of(runs.read_export(Path(out).absolute()))
    for raw, moves, error in reversed(_parse(recorded)):
        if error and raw.get("kind", kind) == kind:
            raise _unusable(error)
        if raw.get("kind") == kind and any(not m.restored for m in moves):
            return str(raw["id"])
    return None


def _concerns(move: Move, faceset: str) -> bool:
    names = {PurePosixPath(move.src).name} if move.kind != KIND_FILE else set()
    first = move.src.split("/")[0]
    return faceset in names | {first, PurePosixPath(runs.set_of(move.src)).name}


@dataclass
class _Chosen:
    """A run some of whose moves this restore puts back."""

    index: int  # in maintenance_runs, oldest first
    raw: dict[str, object]
    moves: list[Move]  # every move of the run
    picked: list[Move]  # those put back
    whole: bool = False  # a merge: every move at once


Claim = tuple[str, bool]  # a path a move owns; True: everything below it too


def _claims(move: Move) -> list[Claim]:
    if move.kind == KIND_FILE:
        return [(move.src, False), (move.dst, False)]
    if move.kind == merge.KIND_SAVED:  # the faceset's manifest comes back whole
        return [(runs.parent_rel(move.src), True), (move.dst, False)]
    return [(move.src, True), (move.dst, True)]


def _overlap(a: Claim, b: Claim) -> bool:
    (pa, below_a), (pb, below_b) = a, b
    return (
        pa == pb or (below_a and pb.startswith(pa + "/")) or (below_b and pa.startswith(pb + "/"))
    )


Parsed = tuple[dict[str, object], list[Move], str | None]  # a run, its moves, why unusable


def _parse(recorded: list[object]) -> list[Parsed]:
    """Every recorded run with its moves; a run whose moves leave the export (or are not
    moves) is kept with the reason, and refuses any restore it would take part in."""
    parsed: list[Parsed] = []
    for raw in recorded:
        if not isinstance(raw, dict):
            parsed.append(({}, [], f"a maintenance run is not an object: {raw!r}"))
            continue
        moves = raw.get("moves", [])
        if not isinstance(moves, list):
            parsed.append((raw, [], f"maintenance run {raw.get('id')!r}: moves are not a list"))
            continue
        try:
            parsed.append((raw, [Move.from_dict(m) for m in moves], None))
        except (UnsafePathError, KeyError, TypeError, ValueError) as error:
            parsed.append((raw, [], f"maintenance run {raw.get('id')!r}: {error}"))
    return parsed


def _unusable(error: str) -> ExportError:
    return ExportError(f"{error}; nothing was restored")


def _check_later_runs(out: Path, parsed: list[Parsed], chosen: list[_Chosen]) -> None:
    """Refuse when a later run, not put back too, moved files this restore would put back or
    rewrite (its records would silently go): that run is named, to be restored first."""
    picked = {c.index: {id(m) for m in c.picked} for c in chosen}
    for item in chosen:
        mine = [claim for m in item.picked for claim in _claims(m)]
        for index in range(item.index + 1, len(parsed)):
            later, moves, error = parsed[index]
            if error:
                raise _unusable(f"a later run cannot be checked: {error}")
            for move in moves:
                if move.restored or id(move) in picked.get(index, set()):
                    continue
                if any(_overlap(a, b) for a in mine for b in _claims(move)):
                    raise ExportError(
                        f"cannot restore run {item.raw.get('id')} ({item.raw.get('kind')}): "
                        f"the later run {later.get('id')} ({later.get('kind')}) moved "
                        f"{move.src} -> {move.dst}, which this restore would undo or overwrite; "
                        f"restore that run first (facesets restore {out} --run "
                        f"{later.get('id')}); nothing was restored"
                    )


class _Virtual:
    """The export as it will be after the renames planned so far, read from the disk as it is."""

    def __init__(self, out: Path) -> None:
        self.disk = Beneath(out)
        self.renames: list[tuple[str, str]] = []

    def physical(self, rel: str) -> str | None:
        """Where what will be at `rel` lies now; None when a planned rename takes it away."""
        for source, target in reversed(self.renames):
            if rel == target or rel.startswith(target + "/"):
                rel = source + rel[len(target) :]
            elif rel == source or rel.startswith(source + "/"):
                return None
        return rel

    def exists(self, rel: str) -> bool:
        now = self.physical(rel)
        return now is not None and self.disk.exists(now)


def _folders(move: Move) -> list[str]:
    """The folders a move reads and writes: its faceset's (or the faceset itself, or the
    folder of a saved manifest), at both ends."""
    if move.kind == KIND_FILE:
        return [runs.set_of(move.src), runs.set_of(move.dst)]
    if move.kind == KIND_FACESET:
        return [move.src, move.dst]
    return [runs.parent_rel(move.src), runs.parent_rel(move.dst)]


def _refuse_links(out: Path, chosen: list[_Chosen]) -> None:
    """No symbolic link in the folders the restore reads or writes (each walked); every
    access goes through Beneath, which follows no link on the way to them, so the rest of the
    export (its report's thumbnails, other facesets) is not walked."""
    runs.guard_folders(
        out, (rel for item in chosen for move in item.picked for rel in _folders(move))
    )


def _steps(item: _Chosen) -> list[tuple[Move, bool]]:
    """The chosen moves of a run in the order they are put back (move, replaces a file)."""
    if not item.whole:
        return [(m, False) for m in reversed(item.picked)]
    folder = [m for m in item.picked if m.kind == KIND_FACESET]
    rest = [m for m in reversed(item.picked) if m.kind != KIND_FACESET]
    return [(m, m.kind == merge.KIND_SAVED) for m in [*folder, *rest]]


def _plan(out: Path, chosen: list[_Chosen]) -> tuple[list[str], list[str], list[journal.Rename]]:
    """Check every move first; the conflicts refuse the whole restore. Returns the faceset
    folders it touches as they lie now, the manifests it rewrites and its renames in order
    (for the journal)."""
    virtual = _Virtual(out)
    planned: list[journal.Rename] = []
    conflicts: list[str] = []
    sets: set[str] = set()
    for item in reversed(chosen):
        for move, replaces in _steps(item):
            if not virtual.exists(move.dst):
                conflicts.append(f"{move.dst} -> {move.src}: {move.dst} is missing")
                continue
            if not replaces and virtual.exists(move.src):
                conflicts.append(f"{move.dst} -> {move.src}: {move.src} exists already")
                continue
            virtual.renames.append((move.dst, move.src))
            planned.append(journal.Rename(move.dst, move.src, replaces))
            if move.kind == KIND_FILE:
                sets.add(runs.set_of(move.src))
            elif move.kind == KIND_FACESET:
                sets.add(move.src)
            else:
                sets.add(runs.parent_rel(move.src))
    if conflicts:
        raise ExportError(
            f"cannot restore: {len(conflicts)} move(s) cannot be put back ("
            + "; ".join(conflicts[:10])
            + ("; ..." if len(conflicts) > 10 else "")
            + "); nothing was restored"
        )
    now = sorted({p for p in (virtual.physical(s) for s in sets) if p})
    manifests = [layout.EXPORT_MANIFEST, *(f"{s}/{layout.FACESET_MANIFEST}" for s in now)]
    return now, manifests, planned


def restore(out: Path, *, run_id: str | None = None, faceset: str | None = None) -> RestoreOutcome:
    """Put back the chosen moves: all of them, or none when one cannot be (each is checked
    first); a journal lets the next run roll back one a crash cut short."""
    if (run_id is None) == (faceset is None):
        raise ExportError("restore needs exactly one of a run id or a faceset name")
    out = Path(out).absolute()
    journal.recover(out)  # a restore a crash cut short is rolled back before reading
    manifest = runs.read_export(out)
    recorded = runs.runs_of(manifest)
    if run_id is not None and not any(
        isinstance(r, dict) and r.get("id") == run_id for r in recorded
    ):
        known = ", ".join(str(r.get("id")) for r in recorded if isinstance(r, dict)) or "none"
        raise ExportError(f"no maintenance run {run_id!r} in {out} (runs: {known})")
    parsed = _parse(recorded)
    chosen: list[_Chosen] = []
    for index, (raw, moves, error) in enumerate(parsed):
        if error:
            if run_id is None or raw.get("id") == run_id:
                raise _unusable(error)
            continue
        if raw.get("kind") in (merge.KIND, *review_actions.WHOLE_KINDS):
            given = raw.get("parameters")
            named = given if isinstance(given, dict) else {}
            wanted = (
                raw.get("id") == run_id
                if run_id is not None
                else faceset in {named.get("faceset"), named.get("into"), named.get("other")}
            )
            left = [m for m in moves if not m.restored]
            if wanted and left:
                if raw.get("kind") == merge.KIND and not any(m.kind == KIND_FACESET for m in moves):
                    raise ExportError(f"merge run {raw.get('id')} records no faceset move")
                chosen.append(_Chosen(index, raw, moves, left, whole=True))
            continue
        picked = [
            m
            for m in moves
            if not m.restored
            and (raw.get("id") == run_id if run_id is not None else _concerns(m, str(faceset)))
        ]
        if picked:
            chosen.append(_Chosen(index, raw, moves, picked))
    outcome = RestoreOutcome()
    if not chosen:
        names = sorted({name for _, name, _ in manifest.entries()})
        if faceset is not None and faceset not in names:  # a typo restores nothing, silently
            raise ExportError(
                f"no faceset {faceset!r} in {out} (facesets: {', '.join(names) or 'none'})"
            )
        return outcome
    _check_later_runs(out, parsed, chosen)
    _refuse_links(out, chosen)
    sets, manifests, planned = _plan(out, chosen)
    log = journal.begin(out, manifests, sets, planned)
    touched: set[str] = set()
    for item in reversed(chosen):
        if item.whole and item.raw.get("kind") != merge.KIND:
            review_actions.undo(out, manifest, item.raw, item.moves, log)
            outcome.restored.extend(m.as_dict() for m in item.picked)
        elif item.whole:
            merge.undo(out, manifest, item.moves, log)
            outcome.restored.extend(m.as_dict() for m in item.picked)
        else:
            for move in reversed(item.picked):
                journal.rename(out, log, move.dst, move.src)
                if move.kind == KIND_FILE:
                    set_rel = runs.set_of(move.src)
                    runs.note_restored(out, set_rel, move)
                    touched.add(set_rel)
                else:
                    move_entry(out, manifest, move.dst, move.src, move.partition, "facesets")
                    touched.add(move.src)
                move.restored = True
                outcome.restored.append(move.as_dict())
        item.raw["moves"] = [m.as_dict() for m in item.moves]
        outcome.runs.append(str(item.raw.get("id")))
    for set_rel in sorted(touched):
        runs.rebuild_fsz(out, set_rel)
        refresh_entry(out, manifest, set_rel)
    manifest.extra[layout.MAINTENANCE_RUNS] = recorded
    runs.write_manifest(out, manifest)
    journal.finish(out)
    review_actions.after_restore(out, [item.raw for item in chosen])
    return outcome
