"""Checking and backing up a face store file where it lies (`facesets store check|backup`).

Both work on the file, not through the clustering service: a check is needed most when the
service refuses a damaged store, and SQLite's own locking keeps a backup consistent while a
service on the same machine writes. Neither ever writes to the store.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from facesets.clustering.store import (
    SCHEMA_VERSION,
    SQLITE_HEADER,
    StoreProblem,
    is_corruption,
    refuse_foreign_file,
)


@dataclass(frozen=True)
class CheckLine:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok     ' if self.ok else 'PROBLEM'}  {self.name}: {self.detail}"


def _read_only(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StoreProblem(f"no store at {path}")
    refuse_foreign_file(path)  # a folder or another file: says which
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _count(db: sqlite3.Connection, sql: str, *args: object) -> int:
    return int(db.execute(sql, args).fetchone()[0])


def check_store(path: Path) -> list[CheckLine]:
    """SQLite's integrity check, then facesets' own invariants; one line per check. Raises
    StoreProblem when the file is no store at all."""
    db = _read_only(path)
    try:
        return _checks(db)
    except sqlite3.DatabaseError as error:
        return [CheckLine("readable", False, f"SQLite cannot read the store: {error}")]
    finally:
        db.close()


def _checks(db: sqlite3.Connection) -> list[CheckLine]:
    problems = [row[0] for row in db.execute("PRAGMA integrity_check(20)")]
    lines = [
        CheckLine(
            "sqlite integrity",
            problems == ["ok"],
            "the file is sound" if problems == ["ok"] else "; ".join(problems),
        )
    ]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = {"meta", "images", "paths", "faces", "file_errors"} - tables
    if missing:
        lines.append(CheckLine("facesets tables", False, "missing: " + ", ".join(sorted(missing))))
        return lines
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    version = meta.get("schema_version", "")
    lines.append(
        CheckLine(
            "schema version",
            version.isdigit() and 1 <= int(version) <= SCHEMA_VERSION,
            f"{version or 'none'} (this facesets writes {SCHEMA_VERSION})",
        )
    )
    orphans = _count(
        db,
        "SELECT COUNT(*) FROM faces f LEFT JOIN images i ON i.sha256 = f.sha256 "
        "WHERE i.sha256 IS NULL",
    )
    lines.append(
        CheckLine(
            "every face has its image",
            orphans == 0,
            f"{orphans} faces belong to no stored image" if orphans else "yes",
        )
    )
    dim = meta.get("embedding_dim", "")
    if dim.isdigit():
        wrong = _count(
            db,
            "SELECT COUNT(*) FROM faces WHERE embedding IS NOT NULL AND length(embedding) != ?",
            int(dim) * 4,
        )
        lines.append(
            CheckLine(
                "embedding sizes match the metadata",
                wrong == 0,
                f"{wrong} embeddings are not {dim}-d float32" if wrong else f"all {dim}-d",
            )
        )
    else:
        stored = _count(db, "SELECT COUNT(*) FROM faces WHERE embedding IS NOT NULL")
        lines.append(
            CheckLine(
                "embedding sizes match the metadata",
                stored == 0,
                f"{stored} embeddings but no embedding_dim recorded"
                if stored
                else "no model bound yet",
            )
        )
    counts = _count(
        db,
        "SELECT COUNT(*) FROM images i WHERE i.error_reason = '' AND i.face_count != "
        "(SELECT COUNT(*) FROM faces f WHERE f.sha256 = i.sha256)",
    )
    lines.append(
        CheckLine(
            "face counts match the faces stored",
            counts == 0,
            f"{counts} images disagree with their faces" if counts else "yes",
        )
    )
    # A path is recorded at registration and its image when inference answers, so a path whose
    # content has no image yet awaits an embed (one running, or one interrupted: the next run
    # finishes it). An alias of a stored image must point at one that is there.
    unpathed = _count(
        db,
        "SELECT COUNT(*) FROM images i WHERE NOT EXISTS "
        "(SELECT 1 FROM paths p WHERE p.sha256 = i.sha256)",
    )
    pending = _count(
        db,
        "SELECT COUNT(*) FROM paths p WHERE NOT EXISTS "
        "(SELECT 1 FROM images i WHERE i.sha256 = p.sha256)",
    )
    lines.append(
        CheckLine(
            "every image has a path",
            unpathed == 0,
            f"{unpathed} images no path points to" if unpathed else "yes",
        )
    )
    lines.append(
        CheckLine(
            "paths awaiting inference",
            True,
            f"{pending} (an embed is running or was interrupted; the next embed finishes them)"
            if pending
            else "none",
        )
    )
    return lines


def backup_store(path: Path, dest: Path) -> Path:
    """A consistent copy of the store at `dest` (a file, or a folder to put it in), made with
    SQLite's online backup while services may write, checked, then renamed into place with the
    store's own mode. Raises StoreProblem, with one line saying why, when no backup is made: a
    damaged store, a missing folder (none is created: a typo would scatter backups), a disk
    that refuses the copy."""
    source = _read_only(path)
    try:
        if dest.is_dir():
            dest = dest / path.name
        if dest.resolve() == path.resolve():
            raise StoreProblem(f"the backup of {path} cannot be the store itself")
        if not dest.parent.is_dir():
            raise StoreProblem(
                f"cannot back up {path}: the folder {dest.parent} does not exist (a backup "
                "creates no folder); create it or name another"
            )
        if os.path.lexists(dest):
            _refuse_unless_backup(dest, path)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        _backup_into(source, path, dest, mode)
    finally:
        source.close()
    return dest


def _refuse_unless_backup(dest: Path, path: Path) -> None:
    """StoreProblem unless `dest` is a backup this command wrote, which a new one replaces: a
    facesets store still in SQLite's rollback-journal mode (a backup is written so; a service
    turns a store it opens to WAL). Notes, another database, or a store in use (STORE and DEST
    swapped) are never replaced."""
    header = b""
    if not dest.is_symlink() and dest.is_file():
        with open(dest, "rb") as handle:
            header = handle.read(20)
    not_backup = StoreProblem(
        f"{dest} exists and is not a backup of a face store; a backup replaces only an "
        "earlier backup, never another file. Name a new file (or a folder to write it in)"
    )
    if header[:16] != SQLITE_HEADER:
        raise not_backup
    if header[18:20] != b"\x01\x01" or Path(f"{dest}-wal").exists():
        raise StoreProblem(
            f"{dest} is a database in use (in WAL mode, as a store a service has opened), not "
            f"a backup; refusing to replace it. `facesets store backup STORE DEST` copies STORE "
            f"({path}) to DEST: check the two are not swapped, or name a new file"
        )
    if not _is_store(dest):
        raise not_backup


def _is_store(path: Path) -> bool:
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error:
        return False
    finally:
        db.close()
    return row is not None


def _backup_into(source: sqlite3.Connection, path: Path, dest: Path, mode: int) -> None:
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    except OSError as error:
        raise StoreProblem(f"cannot write a backup in {dest.parent}: {error.strerror}") from error
    os.close(handle)
    try:
        copy = sqlite3.connect(temporary)
        try:
            source.backup(copy)  # all pages in one step: one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            copy.close()
        if verdict != "ok":
            raise StoreProblem(
                f"the face store {path} is damaged (SQLite's check: {verdict}); no backup was "
                f"written. See what is wrong with `facesets store check {path}`"
            )
        os.chmod(temporary, mode)  # mkstemp makes 0600; the backup reads as the store does
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, dest)
    except sqlite3.Error as error:
        Path(temporary).unlink(missing_ok=True)
        # SQLITE_FULL: the disk of the copy is full; the store itself is fine
        if getattr(error, "sqlite_errorname", "") == "SQLITE_FULL":
            size = os.stat(path).st_size
            raise StoreProblem(
                f"cannot write the backup {dest}: the disk is full (the backup needs about "
                f"{size / 1e6:.1f} MB); free some space and run the same command again"
            ) from error
        what = "is damaged" if is_corruption(error) else "cannot be copied"
        raise StoreProblem(
            f"the face store {path} {what} ({error}); no backup was written. See what is wrong "
            f"with `facesets store check {path}`"
        ) from error
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise StoreProblem(f"cannot write the backup {dest}: {error.strerror}") from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
