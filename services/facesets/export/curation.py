"""What a person decided on an export, kept when export-swap exports its facesets again.

Review and maintenance runs (reject, split, merge, occlusion, dedup-optimize) record their moves
in EXPORT/manifest.json and edit the faceset manifests. A re-export (after `route` or `extend`
added faces, or `facesets run` again) wrote each faceset anew from the refine manifest: rejected
crops came back, a merged faceset reappeared beside its target, the crops a merge or a split
brought into a faceset left its .fsz and manifest, a name given in review went. What this
module reads lets the export keep them:

- a faceset a run set aside (the `merged` and `masked` partitions) is not exported again;
- the crops a run brought into a faceset (a move whose end is its faces/ folder, not restored)
  stay, records and files, ranked with the new crops;
- the faces a run dropped from a faceset (records with the run's id under `dropped`) stay
  dropped, their records kept; no face a run placed anywhere is cropped again elsewhere;
- a faceset's name from review keeps naming it and its .fsz files;
- a faceset a review split made keeps its folder: a plan whose faceset of that name is another
  identity (numbered by `route` after the split) is refused, not mixed into it; so is a plan
  whose faceset of a curated faceset's name holds mostly other faces (a plan from another
  refine output, or one where that person's faces went apart: faceset_003 is another person).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from facesets.common.beneath import Beneath, UnsafePathError, is_relative
from facesets.contract import layout
from facesets.contract.manifests import ExportManifest, ManifestError
from facesets.contract.review import check_person_name
from facesets.export.errors import ExportError
from facesets.export.maintenance import runs
from facesets.export.maintenance.review_actions import KIND_NAME
from facesets.export.maintenance.runs import KIND_FILE, Move

log = structlog.get_logger(__name__)

SET_ASIDE = ("merged", "masked")  # the partitions a run moves a whole faceset to


@dataclass
class Carried:
    """One faceset's curation: the crop records a run brought in (with their PNGs' bytes, for
    the .fsz), the records of faces a run dropped, and its name from review."""

    crops: list[tuple[dict[str, object], bytes]] = field(default_factory=list)
    dropped: list[dict[str, object]] = field(default_factory=list)
    label: str = ""
    # The faces of the crops the export made there (not those a run brought in): who the
    # faceset is, to tell whether a plan's faceset of the same name is still that person.
    exported: set[int] = field(default_factory=set)

    def is_curated(self) -> bool:
        return bool(self.crops or self.dropped or self.label)


@dataclass
class Curation:
    aside: dict[str, str] = field(default_factory=dict)  # faceset -> the partition it is in
    sets: dict[str, Carried] = field(default_factory=dict)  # faceset -> what it keeps
    placed: set[int] = field(default_factory=set)  # face ids a run put or dropped somewhere
    split_made: dict[str, str] = field(default_factory=dict)  # faceset a split made -> source

    def kept_of(self, name: str) -> Carried:
        return self.sets.get(name) or Carried()


def _moves(run: object) -> list[Move]:
    """A recorded run's moves that are not restored (a damaged record is skipped: restore
    names it when asked)."""
    found: list[Move] = []
    for raw in run.get("moves", []) if isinstance(run, dict) else []:
        try:
            move = Move.from_dict(raw)
        except (UnsafePathError, KeyError):
            continue
        if not move.restored:
            found.append(move)
    return found


def _names(recorded: list[object]) -> dict[str, str]:
    """faceset -> the name review gave it last (a `name` run not restored)."""
    names: dict[str, str] = {}
    for run in recorded:
        if not isinstance(run, dict) or run.get("kind") != KIND_NAME or not _moves(run):
            continue
        parameters = run.get("parameters")
        if isinstance(parameters, dict):
            faceset, name = parameters.get("faceset"), parameters.get("name")
            if isinstance(faceset, str) and isinstance(name, str):
                try:  # a name review would take (the record is a file anyone may edit)
                    names[faceset] = check_person_name(name)
                except ValueError:
                    log.warning("export.curated_name_ignored", faceset=faceset)
    return names


def _face_id(record: Mapping[str, object]) -> int | None:
    value = record.get("face_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_curation(out: Path, top_manifest: Mapping[str, object]) -> Curation:
    """The export's curation, read from its manifests (see the module docstring)."""
    try:
        manifest = ExportManifest.from_json(dict(top_manifest), str(out / layout.EXPORT_MANIFEST))
    except ManifestError as exc:
        raise ExportError(str(exc)) from exc
    curation = Curation()
    exported = manifest.partitions.get("facesets") or {}
    for partition in SET_ASIDE:
        for name in manifest.partitions.get(partition) or {}:
            if name not in exported:
                curation.aside[name] = partition
    recorded = runs.runs_of(manifest)
    arrived = {m.dst for run in recorded for m in _moves(run) if m.kind == KIND_FILE}
    names = _names(recorded)
    disk = Beneath(out)
    for name, entry in exported.items():
        if isinstance(entry, dict) and isinstance(entry.get("split_from"), str):
            curation.split_made[name] = str(entry["split_from"])
        try:
            set_rel = runs.set_rel_of(entry, name)
        except UnsafePathError:
            continue  # the export refuses such an entry where it writes
        inner = runs.faceset_manifest(out, set_rel)
        if inner is None:
            continue
        kept = Carried(label=names.get(name, ""))
        for record in inner.crops:
            file = record.get("file")
            if not isinstance(file, str) or file not in arrived or not is_relative(file):
                if (face := _face_id(record)) is not None:
                    kept.exported.add(face)
                continue
            try:
                kept.crops.append((dict(record), disk.read_bytes(file)))
            except (OSError, UnsafePathError):
                log.warning("export.curated_crop_unreadable", faceset=name, file=file)
                continue
            if (face := _face_id(record)) is not None:
                curation.placed.add(face)
        for record in inner.dropped:
            if not record.get("run"):
                continue  # the export's own drops: made again by this run
            kept.dropped.append(dict(record))
            if (face := _face_id(record)) is not None:
                curation.placed.add(face)
        if kept.is_curated():
            curation.sets[name] = kept
    return curation
