"""The report's per-faceset summaries, OUT/report/summaries.json: what each faceset's row on
the overview (and on the drop and look-alike pages) shows, as the last report read it, with
the thumbnails it used.

A review action's refresh reads again only the facesets it touched, those whose page is
missing and those whose key changed, and renders the overview from the other rows: a row's key
is a digest of the master manifest's entry and of the identity of the faceset manifest it was
read from (inode, size, modification and change times: every manifest write is a rename).
The file is read like anything else found on disk: a row whose key does not match, or whose
values are not what a row holds (a wrong type, a path that is not a plain relative one), is
read again from the manifests, and a thumbnail name that is not one the cache makes, or that
the cache no longer holds, is made again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import structlog

from facesets.common import settings
from facesets.common.beneath import Beneath, is_relative
from facesets.contract import layout
from facesets.export.report.model import (
    Crop,
    Dropped,
    Entry,
    PartitionKind,
    manifest_rel,
    page_name,
    read_entry,
)
from facesets.export.report.thumbnails import THUMB_NAME

log = structlog.get_logger(__name__)

VERSION = 1
LOOKALIKE_CROPS = 4  # a look-alike pair shows this many top crops of a faceset
SUMMARIES = f"{layout.REPORT_DIR}/{layout.REPORT_SUMMARIES}"
_HELD: tuple[tuple[object, ...], set[str]] | None = None  # the thumbnails folder, last listed
Rows = dict[tuple[str, str], dict[str, Any]]
_WRITTEN: tuple[tuple[object, ...], Rows] | None = None  # summaries.json as this process wrote it


def _crops_kept() -> int:
    """Top crops a row keeps: the overview's strip, and a look-alike pair's."""
    return max(settings.export().report.row_thumbs, LOOKALIKE_CROPS)


# --- checking a row read from disk (each raises TypeError or ValueError) --------------------


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def _float(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError("not a number")
    return float(value)


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value


def _dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


@lru_cache(maxsize=1 << 16)  # a refresh checks the same few thousand paths every time
def _plain(value: str) -> bool:
    return is_relative(value)


def _rel(value: object) -> str:
    if not isinstance(value, str) or not _plain(value):
        raise ValueError("not a plain relative path")
    return value


def _optional(check: Any, value: object) -> Any:
    return None if value is None else check(value)


def _entry_from(raw: dict[str, Any], key: str, name: str) -> Entry:
    crops = [
        Crop(
            file=_rel(c["file"]),
            rank=_int(c["rank"]),
            in_top=c["in_top"] is True,
            composite=_float(c["composite"]),
            title=_str(c["title"]),
        )
        for c in map(_dict, _list(raw["crops"]))
    ]
    if len(crops) > _crops_kept() or not all(c.in_top for c in crops):
        raise ValueError("not the crops a row keeps")
    dropped = [
        Dropped(
            reason=_str(d["reason"]),
            detail=_str(d["detail"]),
            face_id=d["face_id"],
            source=_str(d["source"]),
            thumbnail=_optional(_rel, d["thumbnail"]),
            title=_str(d["title"]),
        )
        for d in map(_dict, _list(raw["dropped"]))
    ]
    return Entry(
        partition=key,
        name=name,
        kept=_int(raw["kept"]),
        faces=_int(raw["faces"]),
        top=_int(raw["top"]),
        recropped=_int(raw["recropped"]),
        mean_quality=_float(raw["mean_quality"]),
        sources=[_str(s) for s in _list(raw["sources"])],
        flags=[_str(f) for f in _list(raw["flags"])],
        crops=crops,
        dropped=dropped,
        dropped_counts={_str(k): _int(v) for k, v in _dict(raw["dropped_counts"]).items()},
        fsz=[_str(f) for f in _list(raw["fsz"])],
        skipped=[dict(_dict(s)) for s in _list(raw["skipped"])],
        page=page_name(key, name),
        into=_optional(_str, raw["into"]),
        years=_optional(_str, raw["years"]),
        small_px=_optional(_float, raw["small_px"]),
        label=_str(raw["label"]),
    )


def _record(entry: Entry) -> dict[str, Any]:
    """The entry as a row holds it: its top crops only (its page is not rendered from it)."""
    found = {f.name: getattr(entry, f.name) for f in fields(Entry)}
    found["crops"] = [asdict(c) for c in entry.top_crops[: _crops_kept()]]
    found["dropped"] = [asdict(d) for d in entry.dropped]
    for derived in ("partition", "name", "page"):
        del found[derived]
    return found


def _shown(entry: Entry) -> set[str]:
    return {c.file for c in entry.crops} | {d.thumbnail for d in entry.dropped if d.thumbnail}


def _names(disk: Beneath, rel: str, files: bool = False) -> set[str]:
    """The names in a folder of OUT (none when it is missing or not a plain folder); `files`:
    its regular files only (the kind the folder listing gives: no stat of each, no link)."""
    try:
        with disk.dir_fd(rel) as fd, os.scandir(fd) as listing:
            return {
                item.name for item in listing if not files or item.is_file(follow_symlinks=False)
            }
    except (OSError, ValueError):
        return set()


class Summaries:
    """The rows of the last report, and the rows of this one as its entries are read.

    `forced`: the facesets read again whatever their row says (a review action's), None for
    a full report, which reads every faceset and only writes the rows."""

    def __init__(self, out: Path, forced: set[str] | None) -> None:
        self.out = out
        self.disk = Beneath(out)
        self.forced = forced
        self.rows: Rows = {} if forced is None else self._load()
        self.pages: set[str] | None = None  # the entry pages on disk, listed once
        self.reused: dict[int, dict[str, Any]] = {}  # id(entry) → its row, for entries reused
        self.keys: dict[int, str] = {}  # id(entry) → its key
        self.shown: dict[int, set[str]] = {}  # id(entry) → the images its row shows
        self.flags: dict[int, list[str]] = {}  # id(entry) → its flags as read, for its row
        self.written: Rows = {}  # the rows `text` wrote

    def _identity(self) -> tuple[object, ...] | None:
        info = self.disk.lstat(SUMMARIES)
        if info is None:
            return None
        return (str(self.out), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def remember(self) -> None:
        """The rows just written (or found unchanged) kept in this process with the file's
        identity: the next refresh takes them from here while the file is the same one."""
        global _WRITTEN
        identity = self._identity()
        _WRITTEN = None if identity is None else (identity, self.written)

    def _load(self) -> Rows:
        if _WRITTEN is not None and _WRITTEN[0] == self._identity():
            return _WRITTEN[1]
        try:
            raw = self.disk.read_json(SUMMARIES, default={})
        except (OSError, UnicodeDecodeError, ValueError) as error:  # a link, damaged JSON
            log.warning(
                "report.summaries_unreadable", path=str(self.out / SUMMARIES), error=str(error)
            )
            return {}
        rows = raw.get("rows") if isinstance(raw, dict) and raw.get("version") == VERSION else None
        found: Rows = {}
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and all(
                isinstance(row.get(k), str) for k in ("partition", "name", "key")
            ):
                found[(row["partition"], row["name"])] = row
        return found

    def _key(self, key: str, name: str, entry: Mapping[str, Any]) -> str:
        rel = manifest_rel(name, entry)
        info = self.disk.lstat(rel) if rel else None
        identity = (
            [info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode]
            if info is not None
            else None
        )
        report = settings.export().report
        state = [VERSION, _crops_kept(), report.thumb_size, report.thumb_quality]
        # repr of what json.loads made: the same text for the same manifest, and cheap
        text = repr([state, key, name, dict(entry), rel, identity])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _page_exists(self, page: str) -> bool:
        if self.pages is None:
            folder = f"{layout.REPORT_DIR}/{layout.REPORT_PAGES_DIR}"
            self.pages = {
                f"{layout.REPORT_PAGES_DIR}/{part}/{name}"
                for part in _names(self.disk, folder)
                if is_relative(part)
                for name in _names(self.disk, f"{folder}/{part}")
            }
        return page in self.pages

    def entry_of(
        self, out: Path, kind: PartitionKind | None, key: str, name: str, raw: Mapping[str, Any]
    ) -> Entry:
        """The entry from its row when the row still holds (see the module), else read."""
        digest = self._key(key, name, raw)
        row = self.rows.get((key, name))
        if (
            row is not None
            and row["key"] == digest
            and self.forced is not None
            and name not in self.forced
            and self._page_exists(page_name(key, name))
        ):
            try:
                entry = _entry_from(_dict(row.get("entry")), key, name)
            except (KeyError, TypeError, ValueError) as error:
                log.warning("report.summary_refused", faceset=name, error=str(error))
            else:
                self.reused[id(entry)] = row
                self.shown[id(entry)] = _shown(entry)
                self.keys[id(entry)] = digest
                return entry
        entry = read_entry(out, kind, key, name, raw)
        self.keys[id(entry)] = digest
        # Its own flags: those the model adds from the whole export (thin, look-alike,
        # candidates) are added again to every row, reused or not, as the export is now.
        self.flags[id(entry)] = list(entry.flags)
        return entry

    def key_of(self, entry: Entry) -> str | None:
        """The key of the row the entry was read as (or from)."""
        return self.keys.get(id(entry))

    def is_read(self, entry: Entry) -> bool:
        """Whether the entry was read from its manifests (its page can be rendered)."""
        return id(entry) not in self.reused

    def _held(self) -> set[str]:
        """The thumbnails the cache holds (regular files), listed again only when the folder
        changed since this process last listed it (any entry added, removed or replaced)."""
        global _HELD
        folder = f"{layout.REPORT_DIR}/{layout.REPORT_THUMBS_DIR}"
        info = self.disk.lstat(folder)
        if info is None:
            return set()
        state = (str(self.out), info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
        if _HELD is not None and _HELD[0] == state:
            return _HELD[1]
        held = _names(self.disk, folder, files=True)
        _HELD = (state, held)
        return held

    def thumbnails(self) -> dict[str, str]:
        """crop → thumbnail of the reused rows' images, where the cache still holds it."""
        held = self._held()
        found: dict[str, str] = {}
        for entry_id, row in self.reused.items():
            shown = self.shown[entry_id]  # checked as the entry was read from its row
            thumbs = row.get("thumbs")
            for rel, name in thumbs.items() if isinstance(thumbs, dict) else ():
                if rel in shown and name in held and THUMB_NAME.fullmatch(name):
                    found[rel] = name
        return found

    def text(self, entries: list[Entry], thumbs: Mapping[str, str]) -> str:
        """summaries.json for `entries` (read with `entry_of`) and the thumbnails they use."""
        rows = []
        for entry in entries:
            row = self.reused.get(id(entry))
            if row is None:
                record = _record(entry) | {"flags": self.flags[id(entry)]}
                shown = {c["file"] for c in record["crops"]}
                shown |= {d["thumbnail"] for d in record["dropped"] if d["thumbnail"]}
                row = {
                    "partition": entry.partition,
                    "name": entry.name,
                    "key": self.keys[id(entry)],
                    "entry": record,
                    "thumbs": {rel: thumbs[rel] for rel in shown if rel in thumbs},
                }
            rows.append(row)
        self.written = {(row["partition"], row["name"]): row for row in rows}
        payload = {"version": VERSION, "rows": rows}
        return json.dumps(payload, sort_keys=True, ensure_ascii=False, default=repr) + "\n"
