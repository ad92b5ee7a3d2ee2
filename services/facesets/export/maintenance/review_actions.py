"""The review decisions of `facesets review` (RejectCrops, Split, Name, MarkDifferent), each a
maintenance run of the export: recorded in `maintenance_runs` before anything moves, and put
back whole by `facesets restore --run ID`.

- reject: PNGs move to their faces/_dropped/ (reason `rejected`), like an occlusion run;
- split: PNGs move to a new faceset (next free number) or to a chosen one, with their crop
  records; both manifests are saved aside first (OUT/_review/.runs/<run>/) so restore puts them
  back byte for byte, and a new faceset folder is removed again;
- name: the faceset's manifests take the name (`label`), its .fsz files are renamed after it;
- mark different: the pair goes to OUT/_review/different_people.json and leaves the look-alike
  list; with a store, STORE.cannot_link.json lists the two face groups, which refine keeps apart.

Crops are named by file name and must be listed in the faceset's manifest: every path comes from
the export's manifests, never from a request.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from facesets.common.beneath import Beneath
from facesets.contract import layout
from facesets.contract.manifests import ExportManifest, FacesetManifest, as_float, as_int
from facesets.contract.review import bundle_name, check_person_name
from facesets.export.errors import ExportError
from facesets.export.maintenance import journal, runs
from facesets.export.maintenance.merge import KIND_SAVED, _faceset_entry
from facesets.export.maintenance.occlusion import apply_run, refresh_entry
from facesets.export.maintenance.runs import KIND_FILE, Move, Run

KIND_REJECT = "reject"
KIND_SPLIT = "split"
KIND_NAME = "name"
KIND_DIFFERENT = "mark_different"
# Runs restore puts back whole (their saved manifests replace the rewritten ones).
WHOLE_KINDS = (KIND_SPLIT, KIND_NAME, KIND_DIFFERENT)
REASON_REJECTED = "rejected"
FACESETS = "facesets"
LOOKALIKES = "lookalikes"
BEFORE = "before"  # a run's copy of the master-manifest values it changed
# The keys a faceset made by a split writes (no `version`, no `files`: as it always wrote).
SPLIT_KEYS = {"faceset", "number", "params", "fsz_top", "fsz_all", "counts", "crops", "dropped"}

# The master-manifest values a run changed (faceset entries, `lookalikes`), saved in the run.
Before = dict[str, object]


def _entry_of(out: Path, manifest: ExportManifest, name: str, role: str) -> str:
    """The folder (relative to OUT) of faceset `name` of the master manifest."""
    return runs.set_rel_of(_faceset_entry(manifest, name, role, out), name)


def _faceset(out: Path, set_rel: str) -> FacesetManifest:
    """A faceset's manifest (an empty one when it has none)."""
    return runs.faceset_manifest(out, set_rel) or FacesetManifest(read_keys=set())


def _guard(out: Path, *sets: str) -> None:
    """No link in the facesets the action touches (runs.guard_folders)."""
    runs.guard_folders(out, sets)


def _saved(run_id: str, name: str) -> str:
    return f"{layout.REVIEW_RUNS_DIR}/{run_id}/{name}"


def _crop_files(out: Path, set_rel: str, crops: tuple[str, ...] | list[str]) -> list[str]:
    """The PNGs (relative to OUT) of the named crops: each must be one the faceset's manifest
    lists and its faces/ folder holds."""
    listed = {
        PurePosixPath(str(c.get("file"))).name: str(c.get("file"))
        for c in _faceset(out, set_rel).crops
        if c.get("file")
    }
    present = set(runs.crop_pngs(out, set_rel))
    files: list[str] = []
    for crop in dict.fromkeys(crops):
        rel = listed.get(crop)
        if rel is None or rel not in present:
            raise ExportError(f"{crop!r} is not a crop of {PurePosixPath(set_rel).name}")
        files.append(rel)
    return files


def _as_dict(run: Run, before: Before) -> dict[str, object]:
    return run.as_dict() | {BEFORE: before}


def _record(out: Path, run: Run, before: Before) -> list[object]:
    """The run recorded in the master manifest before anything moves; returns the runs."""
    manifest = runs.read_export(out)
    recorded = runs.runs_of(manifest)
    manifest.extra[layout.MAINTENANCE_RUNS] = [*recorded, _as_dict(run, before)]
    runs.write_manifest(out, manifest)
    return recorded


def _finish(
    out: Path, manifest: ExportManifest, recorded: list[object], run: Run, before: Before
) -> None:
    manifest.extra[layout.MAINTENANCE_RUNS] = [*recorded, _as_dict(run, before)]
    runs.write_manifest(out, manifest)
    journal.finish(out)


@dataclass
class Summary:
    """What a review action did: its run, and the faceset a split filled, the name given, or
    why nothing was done."""

    run: Run
    into: str | None = None
    name: str | None = None
    note: str | None = None
    store_links: str | None = None  # a mark-different run: the store's cannot-link list

    def as_dict(self) -> dict[str, object]:
        """The job's reply: run id, kind, counts, moves, then what else the action said."""
        found: dict[str, object] = {
            "run": self.run.id,
            "kind": self.run.kind,
            "counts": self.run.counts,
            "moves": [m.as_dict() for m in self.run.moves],
        }
        said = {
            "into": self.into,
            "name": self.name,
            "note": self.note,
            "store_links": self.store_links,
        }
        return found | {key: value for key, value in said.items() if value is not None}


def _entries_before(
    manifest: ExportManifest, names: list[str]
) -> dict[str, dict[str, object] | None]:
    entries = manifest.partitions.get(FACESETS) or {}
    return {name: copy.deepcopy(entries.get(name)) for name in names}


# --- reject --------------------------------------------------------------------------------------


def reject(out: Path, faceset: str, crops: tuple[str, ...]) -> Summary:
    out = Path(out).absolute()
    journal.recover(out)  # a run a crash cut short is rolled back before reading
    manifest = runs.read_export(out)
    set_rel = _entry_of(out, manifest, faceset, "faceset")
    _guard(out, set_rel)
    run = Run(KIND_REJECT, {"faceset": faceset, "crops": list(crops)})
    for rel in _crop_files(out, set_rel, crops):
        run.moves.append(
            Move(rel, runs.dropped_path(rel), KIND_FILE, REASON_REJECTED, "rejected in review")
        )
    run.counts = {"rejected": len(run.moves)}
    apply_run(out, run, provenance_key="review_run")
    return Summary(run)


# --- split ---------------------------------------------------------------------------------------


def _next_number(manifest: ExportManifest, out: Path) -> int:
    """One past every faceset number the manifest names (in any object section)."""
    numbers = [-1]
    sections = [*manifest.partitions.values(), *manifest.extra.values()]
    for section in sections:
        if isinstance(section, dict):
            for name, entry in section.items():
                if isinstance(entry, dict) and isinstance(entry.get("number"), int):
                    numbers.append(int(entry["number"]))
                digits = str(name).rpartition("_")[2]
                if str(name).startswith("faceset_") and digits.isdigit():
                    numbers.append(int(digits))
    number = max(numbers) + 1
    while Beneath(out).exists(layout.FACESET_DIR.format(number)):
        number += 1
    return number


def _ranked(crops: list[dict[str, object]], top_n: int) -> list[dict[str, object]]:
    ordered = sorted(
        enumerate(crops), key=lambda item: (-as_float(item[1].get("composite", 0.0), 0.0), item[0])
    )
    ranked = []
    for rank, (_, crop) in enumerate(ordered, start=1):
        ranked.append(crop | {"rank": rank, "in_top": rank <= top_n if top_n else True})
    return ranked


def _with_crops(inner: FacesetManifest, crops: list[dict[str, object]]) -> None:
    """`inner` holding `crops`, ranked, with its counts and mean quality to match."""
    top_n = inner.top_n()
    ranked = _ranked(crops, top_n)
    counts = dict(inner.counts)
    counts["kept"] = len(ranked)
    counts["faces"] = len(ranked) + len(inner.dropped)
    counts["top"] = min(top_n or len(ranked), len(ranked))
    composites = [as_float(c["composite"], 0.0) for c in ranked if "composite" in c]
    inner.crops = ranked
    inner.counts = counts
    inner.read_keys |= {"crops", "counts"}
    if composites and len(composites) == len(ranked):
        inner.extra["mean_quality"] = round(sum(composites) / len(composites), 6)


def split(out: Path, faceset: str, crops: tuple[str, ...], into: str = "") -> Summary:
    out = Path(out).absolute()
    journal.recover(out)  # a run a crash cut short is rolled back before reading
    disk = Beneath(out)
    manifest = runs.read_export(out)
    source_rel = _entry_of(out, manifest, faceset, "faceset")
    _guard(out, source_rel, layout.REVIEW_DIR)
    files = _crop_files(out, source_rel, crops)
    source = _faceset(out, source_rel)
    if len(files) >= len(runs.crop_pngs(out, source_rel)):
        raise ExportError(
            f"a split keeps at least one crop in {faceset} (to move them all, merge it instead)"
        )
    created = ""
    if into:
        target_rel = _entry_of(out, manifest, into, "target")
        if target_rel == source_rel:
            raise ExportError(f"{faceset} and {into} name one folder")
        target_name = into
        _guard(out, target_rel)
    else:
        number = _next_number(manifest, out)
        target_name = layout.FACESET_DIR.format(number)
        target_rel = created = target_name
    run = Run(KIND_SPLIT, {"faceset": faceset, "crops": list(crops), "into": target_name})
    before: Before = {
        FACESETS: _entries_before(manifest, [faceset, target_name]),
        "created": created,
    }
    saved_sets = [source_rel] if created else [source_rel, target_rel]
    for set_rel in saved_sets:
        name = f"{PurePosixPath(set_rel).name}.{layout.FACESET_MANIFEST}"
        run.moves.append(
            Move(f"{set_rel}/{layout.FACESET_MANIFEST}", _saved(run.id, name), KIND_SAVED, "split")
        )
    target_faces = (
        f"{target_rel}/{layout.CROPS_DIR}" if created else runs.faces_rel(out, target_rel)
    )
    taken = {name for name, _ in disk.entries(target_faces)} if not created else set()
    moved: dict[str, str] = {}
    for rel in files:
        name = PurePosixPath(rel).name
        if name in taken:
            stem, suffix = name.rsplit(".", 1)
            name = f"{stem}__{faceset}.{suffix}"
        taken.add(name)
        moved[rel] = f"{target_faces}/{name}"
        run.moves.append(Move(rel, moved[rel], KIND_FILE, "split", f"into {target_name}"))
    run.counts = {"pngs": len(files), "new_faceset": int(bool(created))}

    recorded = _record(out, run, before)
    sets = [source_rel, target_rel]
    log = journal.begin(
        out,
        [
            layout.EXPORT_MANIFEST,
            *(f"{s}/{layout.FACESET_MANIFEST}" for s in sets),
            *(m.dst for m in run.moves if m.kind == KIND_SAVED),
        ],
        [source_rel] if created else sets,
        [journal.Rename(m.src, m.dst) for m in run.moves if m.kind == KIND_FILE],
    )
    for move in run.moves:
        if move.kind == KIND_SAVED:
            disk.write_bytes(move.dst, disk.read_bytes(move.src))
    if created:
        disk.makedirs(target_faces)
    for move in run.moves:
        if move.kind == KIND_FILE:
            journal.rename(out, log, move.src, move.dst)
    records = {str(c.get("file")): c for c in source.crops}
    going = [dict(records[rel]) | {"file": moved[rel]} for rel in files if rel in records]
    staying = [dict(c) for f, c in records.items() if f not in moved]
    _with_crops(source, staying)
    runs.write_faceset_manifest(out, source_rel, source)
    if created:
        params = dict(source.params)
        top_n = as_int(params.get("top_n"), 0) or len(going) or 1
        number = int(target_name.rpartition("_")[2])
        inner = FacesetManifest(
            faceset=target_name,
            number=number,
            params=params,
            fsz_top=f"{target_rel}/{layout.FSZ_TOP.format(number, top_n)}",
            fsz_all=f"{target_rel}/{layout.FSZ_ALL.format(number)}",
            extra={"split_from": faceset},
            read_keys=set(SPLIT_KEYS),
        )
        _with_crops(inner, going)
        runs.write_faceset_manifest(out, target_rel, inner)
        entries = dict(manifest.partitions.get(FACESETS) or {})
        entries[target_name] = {
            "number": number,
            "dir": target_rel,
            "manifest": f"{target_rel}/{layout.FACESET_MANIFEST}",
            "fsz_top": inner.fsz_top,
            "fsz_all": inner.fsz_all,
            "counts": dict(inner.counts),
            "top": [],
            "split_from": faceset,
        }
        manifest.partitions[FACESETS] = dict(sorted(entries.items()))
    else:
        target = _faceset(out, target_rel)
        _with_crops(target, [dict(c) for c in target.crops] + going)
        runs.write_faceset_manifest(out, target_rel, target)
    for set_rel in sets:
        runs.rebuild_fsz(out, set_rel)
        refresh_entry(out, manifest, set_rel)
        _copy_quality(out, manifest, set_rel)
    _finish(out, manifest, recorded, run, before)
    return Summary(run, into=target_name)


def _copy_quality(out: Path, manifest: ExportManifest, set_rel: str) -> None:
    entry = (manifest.partitions.get(FACESETS) or {}).get(PurePosixPath(set_rel).name)
    inner = _faceset(out, set_rel)
    if entry is not None and "mean_quality" in inner.extra:
        entry["mean_quality"] = inner.extra["mean_quality"]


# --- name ----------------------------------------------------------------------------------------


def name(out: Path, faceset: str, person: str) -> Summary:
    out = Path(out).absolute()
    journal.recover(out)  # a run a crash cut short is rolled back before reading
    person = check_person_name(person)
    disk = Beneath(out)
    manifest = runs.read_export(out)
    set_rel = _entry_of(out, manifest, faceset, "faceset")
    _guard(out, set_rel, layout.REVIEW_DIR)
    inner = runs.faceset_manifest(out, set_rel)
    if inner is None:
        raise ExportError(f"{out / set_rel} holds no {layout.FACESET_MANIFEST}: not a faceset")
    run = Run(KIND_NAME, {"faceset": faceset, "name": person})
    if inner.extra.get("label") == person:
        run.counts = {"renamed": 0}
        return Summary(run, note=f"{faceset} is named {person!r} already")
    before: Before = {FACESETS: _entries_before(manifest, [faceset])}
    saved = _saved(run.id, f"{faceset}.{layout.FACESET_MANIFEST}")
    run.moves.append(Move(f"{set_rel}/{layout.FACESET_MANIFEST}", saved, KIND_SAVED, "named"))
    run.counts = {"renamed": 1}
    recorded = _record(out, run, before)
    log_manifests = [layout.EXPORT_MANIFEST, f"{set_rel}/{layout.FACESET_MANIFEST}", saved]
    journal.begin(out, log_manifests, [set_rel], [])
    disk.write_bytes(saved, disk.read_bytes(run.moves[0].src))
    old = _fsz_names(inner)
    top_n = inner.top_n() or len(inner.crops)
    bundle = bundle_name(person)
    inner.extra["label"] = person
    inner.fsz_top = f"{set_rel}/{layout.FSZ_TOP_OF.format(bundle, top_n)}"
    inner.fsz_all = f"{set_rel}/{layout.FSZ_ALL_OF.format(bundle)}"
    runs.write_faceset_manifest(out, set_rel, inner)
    runs.rebuild_fsz(out, set_rel)
    _remove_stale_fsz(out, set_rel, old, _fsz_names(inner))
    refresh_entry(out, manifest, set_rel)
    entry = (manifest.partitions.get(FACESETS) or {}).get(faceset)
    if entry is not None:
        entry["label"] = person
    _finish(out, manifest, recorded, run, before)
    return Summary(run, name=person)


def _fsz_names(inner: FacesetManifest | None) -> set[str]:
    if inner is None:
        return set()
    return {PurePosixPath(f).name for f in (inner.fsz_top, inner.fsz_all) if f is not None}


def _remove_stale_fsz(out: Path, set_rel: str, old: set[str], new: set[str]) -> None:
    for stale in sorted(old - new):
        Beneath(out).unlink(f"{set_rel}/{stale}")


# --- mark different ------------------------------------------------------------------------------


def read_different(out: Path) -> list[dict[str, object]]:
    """The pairs of OUT/_review/different_people.json, as written (records kept whole)."""
    raw = Beneath(out).read_json(layout.DIFFERENT_PEOPLE, {})
    pairs = raw.get("pairs") if isinstance(raw, dict) else None
    return [p for p in pairs if isinstance(p, dict)] if isinstance(pairs, list) else []


def _face_ids(out: Path, set_rel: str) -> list[int]:
    return sorted(
        int(face_id)
        for c in _faceset(out, set_rel).crops
        if isinstance(face_id := c.get("face_id"), int)
    )


def _same_pair(item: object, pair: set[str]) -> bool:
    if not isinstance(item, dict):
        return False
    for key in ("facesets", "pair", "names"):
        value = item.get(key)
        if isinstance(value, list) and len(value) == 2:
            return {str(v) for v in value} == pair
    return {str(item.get("a")), str(item.get("b"))} == pair


def _marked(item: dict[str, object], pair: set[str]) -> bool:
    listed = item.get("facesets", [])
    return isinstance(listed, list | tuple | set | str) and set(listed) == pair


def mark_different(out: Path, faceset: str, other: str, store: Path | None = None) -> Summary:
    out = Path(out).absolute()
    journal.recover(out)  # a run a crash cut short is rolled back before reading
    disk = Beneath(out)
    manifest = runs.read_export(out)
    _guard(out, layout.REVIEW_DIR)
    rels = [
        _entry_of(out, manifest, n, role) for n, role in ((faceset, "faceset"), (other, "other"))
    ]
    pair = {faceset, other}
    run = Run(KIND_DIFFERENT, {"faceset": faceset, "other": other})
    if store is not None:  # restore rewrites the store's list too
        run.parameters["store"] = str(store)
    known = read_different(out)
    if any(_marked(p, pair) for p in known):
        run.counts = {"pairs": 0}
        return Summary(run, note=f"{faceset} and {other} are marked different already")
    if not disk.exists(layout.DIFFERENT_PEOPLE):  # the saved copy needs a file to put back
        disk.write_json(layout.DIFFERENT_PEOPLE, {"pairs": []})
    before: Before = {LOOKALIKES: copy.deepcopy(manifest.extra.get(LOOKALIKES))}
    saved = _saved(run.id, PurePosixPath(layout.DIFFERENT_PEOPLE).name)
    run.moves.append(Move(layout.DIFFERENT_PEOPLE, saved, KIND_SAVED, "different"))
    run.counts = {"pairs": 1}
    recorded = _record(out, run, before)
    journal.begin(out, [layout.EXPORT_MANIFEST, layout.DIFFERENT_PEOPLE, saved], [], [])
    disk.write_bytes(saved, disk.read_bytes(layout.DIFFERENT_PEOPLE))
    item = {
        "facesets": sorted(pair),
        "face_ids": [_face_ids(out, rels[0]), _face_ids(out, rels[1])],
        "run": run.id,
    }
    disk.write_json(layout.DIFFERENT_PEOPLE, {"pairs": [*known, item]})
    lookalikes = manifest.extra.get(LOOKALIKES)
    if isinstance(lookalikes, list):
        manifest.extra[LOOKALIKES] = [p for p in lookalikes if not _same_pair(p, pair)]
    elif isinstance(lookalikes, dict) and isinstance(lookalikes.get("pairs"), list):
        kept = [p for p in lookalikes["pairs"] if not _same_pair(p, pair)]
        manifest.extra[LOOKALIKES] = lookalikes | {"pairs": kept}
    _finish(out, manifest, recorded, run, before)
    linked = sync_store(out, store) if store is not None else None
    return Summary(run, store_links=str(linked) if linked else "")


def sync_store(out: Path, store: Path) -> Path:
    """STORE.cannot_link.json lists, per export, the face groups marked as different people
    (rewritten whole from the export's list; other exports' entries are kept)."""
    path = Path(str(store) + layout.CANNOT_LINK_SUFFIX)
    current = layout.read_json(path) or {}
    exports = current.get("exports") if isinstance(current, dict) else None
    exports = dict(exports) if isinstance(exports, dict) else {}
    groups = [p["face_ids"] for p in read_different(out) if isinstance(p.get("face_ids"), list)]
    if groups:
        exports[str(out)] = groups
    else:
        exports.pop(str(out), None)
    layout.atomic_write_bytes(path, json.dumps({"exports": exports}, indent=1).encode())
    return path


# --- undo (restore of a whole review run) --------------------------------------------------------


def _restore_entries(manifest: ExportManifest, saved: object, run_id: object) -> None:
    """The faceset entries a run saved back in the master manifest (None: the run added it)."""
    entries = dict(manifest.partitions.get(FACESETS) or {})
    for name, entry in (saved if isinstance(saved, dict) else {}).items():
        if entry is None:
            entries.pop(name, None)
        elif isinstance(entry, dict):
            entries[name] = entry
        else:
            raise ExportError(f"review run {run_id} saved no entry of {name}: {entry!r}")
    manifest.partitions[FACESETS] = dict(sorted(entries.items()))


def undo(
    out: Path,
    manifest: ExportManifest,
    raw: dict[str, object],
    moves: list[Move],
    log: journal.Journal,
) -> list[str]:
    """Put a split, name or mark-different run back: the PNGs return, the saved manifests
    replace the rewritten ones, a faceset the run made is removed, the master-manifest values
    it changed come back (in `manifest`, which restore writes); returns the faceset folders
    whose .fsz were rebuilt."""
    disk = Beneath(out)
    recorded = raw.get(BEFORE)
    before: dict[str, object] = recorded if isinstance(recorded, dict) else {}
    created = str(before.get("created") or "")
    touched: list[str] = []
    stale: dict[str, set[str]] = {}
    for move in moves:
        if move.kind == KIND_SAVED and move.src.endswith("/" + layout.FACESET_MANIFEST):
            set_rel = runs.parent_rel(move.src)
            stale[set_rel] = _fsz_names(runs.faceset_manifest(out, set_rel))
    brought = {m.dst for m in moves if m.kind == KIND_FILE}
    for move in reversed(moves):
        if move.restored:
            continue
        if move.kind == KIND_FILE:
            journal.rename(out, log, move.dst, move.src)
        elif move.kind == KIND_SAVED and move.src.endswith("/" + layout.FACESET_MANIFEST):
            runs.put_back_manifest(out, log, move, brought)  # with crops exported since
            touched.append(runs.parent_rel(move.src))
        elif move.kind == KIND_SAVED:
            journal.rename(out, log, move.dst, move.src, replace=True)
        move.restored = True
    if created and disk.is_dir(created) and not runs.crop_pngs(out, created):
        for name in _fsz_names(runs.faceset_manifest(out, created)):
            disk.unlink(f"{created}/{name}")
        disk.unlink(f"{created}/{layout.FACESET_MANIFEST}")
        for folder in (f"{created}/{layout.CROPS_DIR}", created):
            disk.rmdir(folder)
    for set_rel in touched:
        runs.rebuild_fsz(out, set_rel)
        _remove_stale_fsz(
            out, set_rel, stale.get(set_rel, set()), _fsz_names(runs.faceset_manifest(out, set_rel))
        )
    if FACESETS in before:
        _restore_entries(manifest, before[FACESETS], raw.get("id"))
    if LOOKALIKES in before:
        if before[LOOKALIKES] is None:
            manifest.extra.pop(LOOKALIKES, None)
        else:
            manifest.extra[LOOKALIKES] = before[LOOKALIKES]
    for set_rel in touched:
        refresh_entry(out, manifest, set_rel)
    run_dir = f"{layout.REVIEW_RUNS_DIR}/{raw.get('id')}"
    for folder in (run_dir, layout.REVIEW_RUNS_DIR):
        disk.rmdir(folder)
    return touched


def _recorded(out: Path) -> list[dict[str, object]]:
    """The recorded maintenance runs that are objects, as written."""
    found = runs.read_manifest(Path(out).absolute()).get(layout.MAINTENANCE_RUNS)
    return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []


def last_review_run(out: Path) -> dict[str, object] | None:
    """The newest review run with a move not yet put back (what `undo` in the app restores)."""
    kinds = {KIND_REJECT, *WHOLE_KINDS}
    for raw in reversed(_recorded(out)):
        moves = raw.get("moves", [])
        if (
            raw.get("kind") in kinds
            and isinstance(moves, list)
            and any(isinstance(m, dict) and not m.get("restored") for m in moves)
        ):
            return raw
    return None


def after_restore(out: Path, restored: list[dict[str, object]]) -> None:
    """A restored mark-different run: the store's cannot-link list follows the export's."""
    for raw in restored:
        given = raw.get("parameters")
        store = given.get("store") if isinstance(given, dict) else None
        listed = bool(store) and Path(str(store) + layout.CANNOT_LINK_SUFFIX).exists()
        if raw.get("kind") == KIND_DIFFERENT and listed:
            sync_store(out, Path(str(store)))


def touched_by(out: Path, run_ids: list[str]) -> set[str] | None:
    """The facesets review runs named (their report pages are all a restore of them changes);
    None when another kind of run is among them (the whole report is rebuilt)."""
    wanted = set(run_ids)
    names: set[str] = set()
    for raw in _recorded(out):
        if raw.get("id") not in wanted:
            continue
        if raw.get("kind") not in (KIND_REJECT, *WHOLE_KINDS):
            return None
        given = raw.get("parameters")
        named = given if isinstance(given, dict) else {}
        names |= {str(named[k]) for k in ("faceset", "into", "other") if named.get(k)}
    return names if wanted else None
