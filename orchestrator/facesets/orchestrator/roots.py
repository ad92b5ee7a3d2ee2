"""The folders a command's local services may use (`facesets serve --allow-root`).

A command lists the files and folders it works on once (its stage request's `roots()`); a
face store among them brings the folders of the photos it holds, since the services read those
photos again (enrich, cluster's links, export's crops).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# More photo folders than this are folded into their parents, so that a store of many small
# folders (one per person) gives a short command line.
MAX_PHOTO_ROOTS = 64
_SQLITE_HEADER = b"SQLite format 3\x00"


def minimal(paths: Iterable[Path]) -> list[Path]:
    """The paths without those inside another one of them."""
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: (len(p.parts), str(p))):
        if not any(k == path or k in path.parents for k in kept):
            kept.append(path)
    return sorted(kept)


def fold(folders: Iterable[Path], limit: int = MAX_PHOTO_ROOTS) -> list[Path]:
    """At most `limit` folders covering `folders`: the deepest ones give way to their parents."""
    current = minimal(folders)
    while len(current) > limit:
        deepest = max(len(p.parts) for p in current)
        if deepest <= 2:
            break
        current = minimal(p.parent if len(p.parts) == deepest else p for p in current)
    return current


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def _read(store: Path, sql: str) -> list[tuple[object, ...]]:
    """The rows of a query on a face store, opened read-only; none for another file or a
    store that does not answer it."""
    import sqlite3  # here: most commands never read a store (18 ms at every start)

    if not store.is_file() or not _is_sqlite(store):
        return []
    try:
        connection = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.Error:
        return []
    finally:
        connection.close()


def store_photo_folders(store: Path) -> list[Path]:
    """The folders of the photos a face store holds (read-only; nothing for another file)."""
    rows = _read(store, "SELECT path FROM images UNION SELECT path FROM paths")
    folders = {Path(os.path.realpath(os.path.dirname(str(path)))) for (path,) in rows}
    return fold(f for f in folders if f.is_absolute())


def store_id_of(store: Path) -> str:
    """The id a face store was made with ("" for another file, or a store without one yet)."""
    rows = _read(store, "SELECT value FROM meta WHERE key = 'store_id'")
    return str(rows[0][0]) if rows and rows[0][0] else ""


def command_roots(roots: Iterable[Path | None]) -> list[Path]:
    """The given files and folders made absolute, with the photo folders of any store."""
    given = [Path(os.path.abspath(p)) for p in roots if p is not None]
    return minimal([*given, *(f for p in given for f in store_photo_folders(p))])
