"""Putting photos into output folders (hardlink, symlink or copy) and keeping those folders in sync.

A job describes the folder it wants (relative path -> source photo) and the manifest it writes;
`sync_outputs` makes the folder so, touching only files that this job's manifest says it wrote.
Every file appears through a rename, so a folder never holds a partial photo, and a run that
would change nothing writes nothing.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import structlog

from facesets.clustering.jobs.job import (
    JobError,
    ProgressFn,
    report,
    store_identity,
    unusable_manifest,
)
from facesets.clustering.store import FaceStore
from facesets.contract import layout
from facesets.contract.fields import LinkMode
from facesets.contract.manifests import (
    ConsolidateRound,
    ConsolidateState,
    JobManifest,
    ManifestError,
    read_object,
    written_by,
)
from facesets.shared.disk import is_disk_full

M = TypeVar("M", bound=JobManifest)

log = structlog.get_logger(__name__)

# File names stop at 255 bytes on common filesystems; room is left for the temporary name.
MAX_NAME_BYTES = 200


def check_link_mode(mode: str) -> str:
    """A link mode by name (as a manifest records it), checked against LinkMode."""
    try:
        return LinkMode(mode).value
    except ValueError:
        choices = ", ".join(m.value for m in LinkMode)
        raise JobError(f"unknown link mode {mode!r}; choose one of {choices}") from None


def encode_json(payload: object) -> bytes:
    """The bytes layout.atomic_write_json writes, to compare before writing."""
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return text.encode("utf-8")


def write_json_if_changed(path: Path, payload: object) -> bool:
    data = encode_json(payload)
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    layout.atomic_write_bytes(path, data)
    return True


def read_manifest(path: Path, model: type[M], command: str | None = None) -> M | None:
    """The job manifest at `path` as `model`; None when there is none. One that is not JSON,
    not an object or of the wrong shape is a JobError naming the file; so is one of another
    command than `command` (when given), whatever its shape."""
    try:
        raw = read_object(path)
        if raw and command is not None and raw.get("command") != command:
            raise JobError(
                f"{path} belongs to another command ({written_by(raw) or 'unknown'!r}); "
                f"choose another output folder for {command!r}"
            )
        return None if raw is None else model.from_json(raw, str(path))
    except ManifestError as exc:
        raise unusable_manifest(exc) from exc


def check_same_library(
    previous: JobManifest, store: str | None, store_id: str | None, out: Path, command: str
) -> None:
    """Refuse to replace the output another face store's job left in OUT (two libraries into
    one folder: the first one's facesets and the consolidations made on them would go). The
    same store, moved (same id), or a store made anew at the path recorded (the library
    rebuilt) replaces it as before; a manifest made before stores had ids is replaced too."""
    if not previous.store_id or previous.store_id == store_id:
        return
    if previous.store is not None and previous.store == store:
        return
    raise JobError(
        f"{out} holds the {command} output of another face store "
        f"({previous.store or 'unknown'}); give another folder for {store}, or move that "
        "output away first"
    )


def check_output_folder(
    out: Path, manifest_name: str, model: type[M], command: str, store: FaceStore
) -> M | None:
    """`check_same_library` before a job's work, so that a refusal does not wait for it
    (`sync_outputs` checks again when it writes); a refine folder's consolidation a crash cut
    short is rolled back first (`roll_back_consolidation`). Returns the job's manifest there."""
    if manifest_name == layout.REFINE_MANIFEST and out.is_dir():
        roll_back_consolidation(out)
    previous = read_manifest(out / manifest_name, model, command)
    if previous is not None:
        check_same_library(previous, store_identity(store), store.store_id, out, command)
    if manifest_name != layout.EXPORT_MANIFEST:
        # refine into an export folder: photos linked into its faceset folders, among crops.
        try:
            beside = read_object(out / layout.EXPORT_MANIFEST)
        except ManifestError:
            beside = None  # not a manifest anyone could read back: nothing to protect
        if beside is not None and written_by(beside) == "export-swap":
            raise JobError(
                f"{out} is an export (its manifest.json is export-swap's); choose another "
                f"output folder for {command!r}"
            )
    return previous


# --- a consolidation a crash cut short -------------------------------------------------------

APPLYING = "applying"  # a consolidation round's status until its refine manifest is written
DONE = "done"


def revert_round(root: Path, round_: ConsolidateRound) -> None:
    """Undo one consolidation round in a refine folder: the files it added go, the facesets it
    moved to _merged/ come back (where nothing took their place), the refine manifest it
    started from is written back."""
    for merge in reversed(round_.merges):
        remove_owned(root, set(merge.added_files))
        for name, moved in merge.moved.items():
            source, target = inside_or_fail(root, moved), inside_or_fail(root, name)
            if source.exists() and not target.exists():
                os.replace(source, target)
    refine_path = root / layout.REFINE_MANIFEST
    before = round_.refine_before.encode("utf-8")
    if not refine_path.is_file() or refine_path.read_bytes() != before:
        layout.atomic_write_bytes(refine_path, before)


def save_consolidation(root: Path, state: ConsolidateState) -> None:
    path = root / layout.CONSOLIDATE_MANIFEST
    if state.rounds:
        write_json_if_changed(path, state.to_json())
    else:
        path.unlink(missing_ok=True)
    merged_root = root / layout.MERGED_DIR
    if merged_root.is_dir() and not any(merged_root.iterdir()):
        merged_root.rmdir()


def roll_back_consolidation(root: Path) -> bool:
    """Roll back the last consolidation round of a refine folder when a crash cut it short (its
    status still `applying`); True when there was one. Every job that reads or rewrites a
    refine folder does so first: it then works on the folder as the last finished job left
    it, and the round's rollback, made later, cannot undo that job's work."""
    try:
        state = ConsolidateState.read(root / layout.CONSOLIDATE_MANIFEST)
    except ManifestError as exc:
        raise unusable_manifest(exc) from exc
    if state is None or not state.rounds or state.rounds[-1].status != APPLYING:
        return False
    log.warning("rolling back a consolidation that stopped half-way", folder=str(root))
    revert_round(root, state.rounds.pop())
    save_consolidation(root, state)
    return True


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def matches(source: Path, target: Path, mode: str) -> bool:
    """Whether target already is what placing source with this mode would make."""
    if not _exists(target):
        return False
    if mode == "symlink":
        return target.is_symlink() and os.readlink(target) == str(source)
    if target.is_symlink() or not target.is_file():
        return False
    same_inode = os.path.samefile(source, target)
    if mode == "hardlink":
        return same_inode
    if mode == "copy":
        return not same_inode and filecmp.cmp(source, target, shallow=True)
    return same_inode or filecmp.cmp(source, target, shallow=True)


def place(source: Path, target: Path, mode: str) -> str:
    """Make target a hardlink, symlink or copy of source in one rename; returns the mode used.

    `auto` hardlinks and falls back to a copy where the filesystem refuses (another device,
    no hardlink support, no permission).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    used = mode
    try:
        if mode in ("hardlink", "auto"):
            try:
                os.link(source, tmp)
                used = "hardlink"
            except OSError:
                if mode == "hardlink":
                    raise
                used = "copy"
        elif mode == "symlink":
            os.symlink(source, tmp)
        if used == "copy":
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except BaseException as error:
        if _exists(tmp):
            tmp.unlink()
        if isinstance(error, OSError) and is_disk_full(error):
            # Said of the folder: the temporary name means nothing to the user.
            message = f"cannot write in {target.parent}: {error.strerror}"
            raise OSError(error.errno, message) from error
        raise
    return used


def output_name(source: str) -> str:
    """The flattened absolute source path; shortened (same path, same name) past NAME_MAX."""
    name = layout.flattened_name(source)
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    tail = name.encode("utf-8")[-(MAX_NAME_BYTES - len(digest) - 2) :].decode("utf-8", "ignore")
    return f"{digest}__{tail}"


def add_file(wanted: dict[str, str], folder: str, source: str) -> None:
    """Ask for source inside folder under its flattened absolute path."""
    relpath = f"{folder}/{output_name(source)}"
    previous = wanted.setdefault(relpath, source)
    if previous != source:
        log.warning(
            "output name clash; keeping the first", name=relpath, kept=previous, skipped=source
        )


@dataclass
class SyncReport:
    placed: int = 0
    kept: int = 0
    removed: int = 0
    conflicts: list[str] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)
    manifest_written: bool = False

    def summary(self) -> dict[str, int | list[str] | dict[str, int]]:
        return {
            "files_placed": self.placed,
            "files_unchanged": self.kept,
            "files_removed": self.removed,
            "foreign_conflicts": self.conflicts,
            "link_modes_used": dict(sorted(self.modes.items())),
        }


def inside(out: Path, relpath: object) -> Path | None:
    """`out / relpath` when it provably lies inside `out`: a relative path without `..` whose
    folder resolves (symlinks included) within `out`; None for anything else."""
    if not isinstance(relpath, str) or not relpath or "\x00" in relpath:
        return None
    parts = Path(relpath).parts
    if os.path.isabs(relpath) or not parts or any(part in ("..", ".") for part in parts):
        return None
    target = out / relpath
    base = out.resolve()
    folder = target.parent.resolve()
    if folder != base and base not in folder.parents:
        return None
    return target


def inside_or_fail(out: Path, relpath: object) -> Path:
    """`inside`, or a JobError naming the entry (a name taken from an edited manifest)."""
    target = inside(out, relpath)
    if target is None:
        raise JobError(f"{relpath!r} is not a path inside {out}; refusing to write there")
    return target


def owned_files(manifest: JobManifest | None, out: Path) -> set[str]:
    """Files a previous run says it wrote, including those of a run that stopped half-way.

    Only entries that name a file inside `out` count: a manifest is a file anyone who can
    write the folder may edit, so an entry such as `../x` or `/home/me/x` is ignored (and
    logged), never removed or replaced.
    """
    listed = manifest.owned() if manifest is not None else []
    owned = {p for p in listed if inside(out, p) is not None}
    foreign = sorted(str(p) for p in listed if p not in owned)
    if foreign:
        log.warning("manifest entries outside the folder ignored", out=str(out), paths=foreign)
    return owned


def _prune_empty(folder: Path, out: Path) -> None:
    while folder != out and out in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def remove_owned(out: Path, relpaths: set[str]) -> int:
    """Remove these files of `out`; an entry naming anything outside `out` is skipped."""
    removed = 0
    for relpath in sorted(relpaths):
        target = inside(out, relpath)
        if target is None:
            log.warning("not removing a path outside the folder", out=str(out), path=relpath)
            continue
        if _exists(target):
            target.unlink()
            removed += 1
        _prune_empty(target.parent, out)
    return removed


def sync_outputs(
    out: Path,
    manifest_name: str,
    wanted: dict[str, str],
    manifest: JobManifest,
    link_mode: str,
    progress: ProgressFn | None = None,
) -> SyncReport:
    """Make `out` hold exactly the wanted files of this job, then write its manifest.

    Files this job wrote before and no longer wants are removed; files it never wrote are left
    alone, and a foreign file sitting where a wanted one should go is reported, not replaced.
    Before touching files the manifest is rewritten with every path about to be touched under
    `pending`, so a run stopped half-way leaves nothing the next run would not recognise.
    """
    check_link_mode(link_mode)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / manifest_name
    previous = read_manifest(manifest_path, type(manifest), manifest.command)
    if previous is not None:
        check_same_library(previous, manifest.store, manifest.store_id, out, manifest.command)
    owned = owned_files(previous, out)
    sync = SyncReport()
    todo: list[tuple[str, Path, Path]] = []
    final: set[str] = set()
    for relpath, source in sorted(wanted.items()):
        target = inside_or_fail(out, relpath)
        if matches(Path(source), target, link_mode):
            sync.kept += 1
            final.add(relpath)
        elif _exists(target) and relpath not in owned:
            sync.conflicts.append(relpath)
        else:
            todo.append((relpath, Path(source), target))
            final.add(relpath)
    stale = {p for p in owned - final if _exists(out / p)}
    if sync.conflicts:
        log.warning("foreign files left in place", out=str(out), count=len(sync.conflicts))

    if todo or stale:
        # Claim every path about to be touched first (a run that would change nothing skips
        # this and leaves the manifest alone).
        claim = previous or type(manifest)()
        replace(claim, command=manifest.command, pending=sorted(owned | final)).write(manifest_path)
        for done, (_, source_path, target) in enumerate(todo, start=1):
            used = place(source_path, target, link_mode)
            sync.modes[used] = sync.modes.get(used, 0) + 1
            sync.placed += 1
            report(progress, "materialise", done, len(todo))
        sync.removed = remove_owned(out, stale)
    sync.manifest_written = write_json_if_changed(
        manifest_path, replace(manifest, written=sorted(final)).to_json()
    )
    return sync
