"""File layouts of facesets: output folders, manifests and state files, in one place."""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

# --- `facesets cluster STORE OUT` -------------------------------------------------------------
PERSON_DIR = "person_{:03d}"
SINGLETONS_DIR = "_singletons"
NOFACE_DIR = "_noface"
CLUSTER_MANIFEST = "manifest.json"

# --- `facesets refine STORE OUT` ----------------------------------------------------------------
FACESET_DIR = "faceset_{:03d}"
REFINE_MANIFEST = "refine_manifest.json"
NAMED_FACESET_DIR = "faceset_{:03d}_{}"  # a faceset with a person's name: faceset_007_mum
NAME_SLUG_MAX = 40  # characters of the name kept in folder and .fsz names

# --- `facesets consolidate` ---------------------------------------------------------------------
MERGED_DIR = "_merged"
CONSOLIDATE_MANIFEST = "consolidate_manifest.json"

# --- `facesets dedup STORE` ---------------------------------------------------------------------
DUPLICATES_SUFFIX = ".duplicates.json"

# --- `facesets export-swap` ---------------------------------------------------------------------
EXPORT_MANIFEST = "manifest.json"  # top level of OUT, merged across runs
FACESET_MANIFEST = "manifest.json"  # inside each OUT/faceset_NNN/
FSZ_TOP = "faceset_{:03d}_top{}.fsz"
FSZ_ALL = "faceset_{:03d}_all.fsz"
LABEL_MARKER = "{}.txt"  # OUT/faceset_NNN/<label>.txt names where a labelled faceset came from
DISCOVERED_MARKER = "DISCOVERED.txt"  # OUT/faceset_NNN/DISCOVERED.txt names the folder searched
FSZ_TOP_OF = "{}_top{}.fsz"  # by bundle name: a label when given, else the set's name
FSZ_ALL_OF = "{}_all.fsz"
CROPS_DIR = "faces"  # OUT/faceset_NNN/faces/*.png: the PNGs of a faceset
LEGACY_CROPS_DIR = "crops"  # where exports made before faces/ keep them (still read)
CANDIDATES_DIR = "_candidates"
REJECTED_DIR = "_rejected"
REPORT_DIR = "report"
REPORT_INDEX = "index.html"
REPORT_PAGES_DIR = "sets"  # OUT/report/sets/<partition>/<name>.html: one page per faceset
REPORT_THUMBS_DIR = "thumbs"  # OUT/report/thumbs/<key>.jpg: cache keyed by crop path, size, mtime
REPORT_STATE = "report.json"  # OUT/report/report.json: the files the last report wrote
# OUT/report/summaries.json: each faceset's overview row as last read, keyed by its manifests' state
REPORT_SUMMARIES = "summaries.json"

# --- `facesets import-folders` and `facesets discover` (plans kept inside EXPORT) ---------------
IMPORT_FOLDERS_DIR = ".import-folders"  # EXPORT/.import-folders/refine_manifest.json
DISCOVER_DIR = ".discover"  # EXPORT/.discover/refine_manifest.json
# --- export maintenance (occlusion, restore): nothing is deleted, it is moved aside -----------
DROPPED_DIR = "_dropped"  # OUT/faceset_NNN/faces/_dropped/: PNGs a maintenance run took out
MASKED_DIR = "_masked"  # OUT/_masked/faceset_NNN/: facesets mostly occluded
THIN_DIR = "_thin"  # EXPORT/_thin/<era>/: eras under anchor_min_faces faces
ERAS_DIR = "_eras"  # EXPORT/_eras/<faceset>.json: the era plan of one faceset
MERGED_RUNS_DIR = ".runs"  # OUT/_merged/.runs/<run>/: the manifests a merge rewrote, as were
MAINTENANCE_RUNS = "maintenance_runs"  # top-level manifest key: every run's moves, for restore
MAINTENANCE_JOURNAL = ".maintenance-journal.json"  # OUT/...: a restore under way, for recovery
REVIEW_DIR = "_review"  # OUT/_review/: what `facesets review` records beside the facesets
REVIEW_RUNS_DIR = "_review/.runs"  # OUT/_review/.runs/<run>/: manifests a review run rewrote
DIFFERENT_PEOPLE = "_review/different_people.json"  # OUT/...: pairs marked as two people
CANNOT_LINK_SUFFIX = ".cannot_link.json"  # STORE.cannot_link.json: face groups kept apart
AGE_EXTEND_RUNS = "age_extend_runs"  # top-level manifest key: a block per `age extend` that wrote

# --- `facesets run SRC OUT` ---------------------------------------------------------------------
RUN_STORE = "faces.db"
RUN_RAW_DIR = "raw"
RUN_REFINE_DIR = "refined"
RUN_EXPORT_DIR = "export"

# --- `facesets video` (OUT of plan and cut) -------------------------------------------------
VIDEO_PLAN = "plan.json"  # OUT/plan.json: every planned segment of the batch
VIDEO_FRAMES_DIR = "_frames"  # OUT/_frames/<video key>.jsonl: append-only frame results
VIDEO_CUT_PART = ".{}.part{}"  # a clip being written; renamed once its duration checks out
VIDEO_SET_ASIDE_DIR = "_superseded"  # OUT/_superseded/<name>/: clips a re-plan no longer holds

# --- every job that writes an output folder -----------------------------------------------------
WRITER_LOCK = ".facesets.lock"  # held by the one job writing the folder

# --- `facesets immich` --------------------------------------------------------------------------
IMMICH_STATE = "state.json"
IMMICH_QUEUE = "queue.json"
IMMICH_STORE = "faces.db"


def faces_dir(set_dir: Path) -> Path:
    """The folder holding a faceset's PNGs: faces/, or crops/ in an export made before it."""
    faces = set_dir / CROPS_DIR
    legacy = set_dir / LEGACY_CROPS_DIR
    return legacy if not faces.is_dir() and legacy.is_dir() else faces


def faceset_name(faceset: str) -> str:
    """A faceset named or numbered by a user ("7" -> faceset_007)."""
    name = faceset.strip()
    return FACESET_DIR.format(int(name)) if name.isdigit() else name


def name_slug(name: str) -> str:
    """A person's name as a file-name part: ASCII letters and digits joined by '-', lower case
    ("Zoë O'Brien" -> "zoe-o-brien"); "" when nothing of it is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:NAME_SLUG_MAX].rstrip("-")


def named_faceset_dir(number: int, name: str) -> str:
    """A faceset's folder (and .fsz prefix): faceset_NNN_<slug> for a named person, plain
    faceset_NNN when unnamed or when its name leaves no slug. The number stays the identity,
    the slug follows renames."""
    slug = name_slug(name)
    return NAMED_FACESET_DIR.format(number, slug) if slug else FACESET_DIR.format(number)


def era_plan_path(export_dir: Path, faceset: str) -> Path:
    """Where `age split` keeps the era plan of a faceset (named or numbered)."""
    return Path(export_dir) / ERAS_DIR / f"{faceset_name(faceset)}.json"


def duplicates_path(store: Path) -> Path:
    return store.with_name(store.name + DUPLICATES_SUFFIX)


def is_plain_name(name: str) -> bool:
    """One file or folder name: no separator, not `.` or `..`, not empty (a name read from a
    manifest that is anything else would reach outside the folder it is joined to)."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\x00")


def flattened_name(path: str | Path) -> str:
    """A file name made of the absolute source path, stable whatever root a run was given."""
    absolute = os.path.abspath(os.fspath(path))
    return absolute.strip(os.sep).replace(os.sep, "__").replace(":", "")


def _umask() -> int:
    """The process's umask, read without setting it (os.umask would, racing other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def file_mode(mode: int = 0o644) -> int:
    """`mode` as a file created by open() gets it (the umask applied): a file written through
    a temporary one reads like any other file the user makes, not 0600 as mkstemp makes it."""
    return mode & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: Path, default: Any = None) -> Any:
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))
