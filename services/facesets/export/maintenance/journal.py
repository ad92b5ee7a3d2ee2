"""The journal of a restore under way: what a crash half-way needs to be rolled back.

Before its first rename a restore writes OUT/.maintenance-journal.json: the renames it will
make, in order, and the bytes of every manifest it will rewrite (the export's and each faceset's
it touches) as they were. It removes the journal once the export is consistent again. The next
maintenance, report or export-swap job that finds a journal (a crash, a power cut, a killed
service) rolls the restore back first: each rename that was made is undone, newest first, the
manifests get their old bytes back and the .fsz files of the facesets involved are rebuilt from
their folders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from facesets.common.beneath import Beneath, relative
from facesets.contract import layout
from facesets.export.errors import ExportError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Rename:
    src: str
    dst: str
    replace: bool = False  # dst is a file that the rename replaces (a saved manifest put back)


@dataclass
class Journal:
    renames: list[Rename] = field(default_factory=list)
    manifests: dict[str, str | None] = field(default_factory=dict)  # rel -> text before
    sets: list[str] = field(default_factory=list)  # faceset folders (as before) to rebuild

    def as_dict(self) -> dict[str, object]:
        return {
            "renames": [[r.src, r.dst, r.replace] for r in self.renames],
            "manifests": self.manifests,
            "sets": self.sets,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Journal:
        if not isinstance(raw, dict):
            raise ExportError(f"the maintenance journal is not an object: {raw!r}")
        renames = [
            Rename(relative(r[0], "a rename"), relative(r[1], "a rename"), bool(r[2]))
            for r in raw.get("renames", [])
        ]
        manifests = {
            relative(k, "a journal manifest"): (v if isinstance(v, str) else None)
            for k, v in (raw.get("manifests") or {}).items()
        }
        sets = [relative(s, "a journal faceset") for s in raw.get("sets", [])]
        return cls(renames, manifests, sets)


def begin(
    out: Path, manifests: Iterable[str], sets: Sequence[str], renames: Sequence[Rename]
) -> Journal:
    """A journal holding the current bytes of `manifests` (relative to OUT) and the renames
    the job plans, in order, written to disk once before the first of them. Which renames
    were made is read back from the folder (the source gone, the target there), so the
    journal is not rewritten per rename."""
    disk = Beneath(out)
    saved: dict[str, str | None] = {}
    for rel in sorted(set(manifests)):
        try:
            saved[rel] = disk.read_bytes(rel).decode("utf-8")
        except FileNotFoundError:
            saved[rel] = None
    journal = Journal(list(renames), saved, sorted(set(sets)))
    disk.write_json(layout.MAINTENANCE_JOURNAL, journal.as_dict())
    return journal


def rename(out: Path, journal: Journal, src: str, dst: str, *, replace: bool = False) -> None:
    """One of the journal's renames (one it did not plan is added to it on disk first)."""
    step = Rename(src, dst, replace)
    disk = Beneath(out)
    if step not in journal.renames:
        journal.renames.append(step)
        disk.write_json(layout.MAINTENANCE_JOURNAL, journal.as_dict())
    if replace:
        disk.rename(src, dst, replace=True)
    else:
        try:
            disk.rename(src, dst)
        except FileExistsError:
            raise ExportError(f"cannot move {src} to {dst}: {dst} exists already") from None


def finish(out: Path) -> None:
    Beneath(out).unlink(layout.MAINTENANCE_JOURNAL)


def recover(out: Path) -> bool:
    """Roll back a restore a crash left half-way; True when there was one."""
    from facesets.export.maintenance import runs  # runs imports nothing from here

    disk = Beneath(out)
    raw = disk.read_json(layout.MAINTENANCE_JOURNAL)
    if raw is None:
        return False
    journal = Journal.from_dict(raw)
    undone = 0
    for step in reversed(journal.renames):
        if step.replace:
            # Made when the saved copy is gone from src (it now lies at dst, replacing it).
            if not disk.exists(step.src) and disk.exists(step.dst):
                disk.rename(step.dst, step.src)
                undone += 1
        elif not disk.exists(step.src) and disk.exists(step.dst):
            disk.rename(step.dst, step.src)
            undone += 1
    for rel, text in journal.manifests.items():
        if text is None:
            disk.unlink(rel)
        else:
            disk.write_bytes(rel, text.encode("utf-8"))
    for set_rel in journal.sets:
        if disk.is_dir(set_rel) and runs.faceset_manifest(out, set_rel):
            runs.rebuild_fsz(out, set_rel)
    finish(out)
    log.warning("maintenance.journal_rolled_back", out=str(out), renames_undone=undone)
    return True
