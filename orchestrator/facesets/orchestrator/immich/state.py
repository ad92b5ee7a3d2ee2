"""state.json (every asset's outcome) and queue.json (what the embed step should embed).

Both are typed models with a version. Read back, they are checked like any file found on disk:
a record or an item that does not fit (a wrong type, a digest that is not one, a staged path
that is absolute or climbs out with `..`) makes the whole file refused with its name and the
key at fault, never a KeyError; `immich stage` then refuses to go on, rather than rewrite a
file it cannot read.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facesets.contract import layout
from facesets.orchestrator.scan import hash_file

STATE_VERSION: Literal[1] = 1

# Outcomes recorded in state.json.
Status = Literal["staged", "skipped", "error"]
STAGED: Status = "staged"
SKIPPED: Status = "skipped"
ERROR: Status = "error"
NO_FACE = "no_face"
NO_BIG_FACE = "no_big_face"
EXCLUDED = "excluded"
PARTNER = "partner"  # a partner's asset, shared into this user's timeline
DUPLICATE = "duplicate"  # same bytes as another asset of this library
IN_STORE = "in_store"  # same bytes as a photo the face store already holds

_SHA256 = r"^[0-9a-f]{64}$"
M = TypeVar("M", bound=BaseModel)


class StagingFileError(ValueError):
    """state.json or queue.json that cannot be used: not JSON, or not what `immich stage`
    writes."""


def staged_path(value: str) -> str:
    """A staged photo's path as recorded: relative to the user's staging folder, POSIX
    separators, no `..`, no empty or `.` parts. ValueError for anything else."""
    path = PurePosixPath(value)
    parts = value.split("/")
    if (
        not value
        or "\\" in value
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in parts)
        or (len(parts[0]) == 2 and parts[0][1] == ":")
    ):
        raise ValueError(f"{value!r} is not a path inside the staging folder")
    return value


def through_link(user_dir: Path, relative: str) -> bool:
    """Whether a part of user_dir/relative (a staged path) is a symbolic link: a photo there
    would be read from wherever the link points."""
    here = user_dir
    for part in relative.split("/"):
        here = here / part
        if here.is_symlink():
            return True
    return False


def changed_since_staged(
    path: Path, found: os.stat_result, size: int | None, mtime_ns: int | None, sha256: str | None
) -> bool:
    """Whether the staged file at `path` (`found`: its lstat) is not the one placed: another
    size, or another modification time and other bytes. A folder copied without its times
    keeps its bytes: those files are read and hashed, and found unchanged."""
    if found.st_size != size:
        return True
    if mtime_ns is None or found.st_mtime_ns == mtime_ns:
        return False
    hashed = hash_file(str(path))
    return bool(hashed.error) or hashed.sha256 != sha256


class AssetRecord(BaseModel):
    """One asset's outcome in state.json. Keys this version does not know are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: Status
    reason: str | None = None  # why skipped (NO_FACE...), or the error's words
    original_path: str = ""
    checksum: str | None = None  # Immich's, to find the same asset again without a download
    path: str | None = None  # staged: where, relative to the user's staging folder
    sha256: str | None = Field(default=None, pattern=_SHA256)
    size: int | None = Field(default=None, ge=0)
    mtime_ns: int | None = None  # staged: the file's modification time as it was placed
    face_short: float | None = None  # the biggest face's short side, original pixels
    min_face_short: float | None = None  # the threshold a NO_BIG_FACE was decided against
    size_source: str | None = None
    faces: list[dict[str, object]] | None = None  # Immich's faces (None: not recorded)
    recheck: bool | None = None  # a NO_FACE on a recent upload: asked again next run
    duplicate_of: str | None = None
    matched: str | None = None

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        return None if value is None else staged_path(value)

    @model_validator(mode="after")
    def _staged_has_its_file(self) -> AssetRecord:
        if self.status == STAGED and None in (self.path, self.sha256, self.size):
            raise ValueError("a staged asset needs its path, sha256 and size")
        return self

    def as_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True)


class QueueItem(BaseModel):
    """One staged photo for the embed step."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    asset_id: str
    path: str
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)
    original_path: str = ""

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        return staged_path(value)


class StagingQueue(BaseModel):
    """queue.json: the staged photos, by path under the folder the queue is in."""

    model_config = ConfigDict(extra="ignore")

    version: Literal[1]
    user: str
    # Where the folder was when the queue was written; not read back, since the folder may
    # have moved since: readers take the folder the queue is in.
    root: str = ""
    items: list[QueueItem]


class _StateFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal[1]
    user: str = ""
    server: str = ""
    people: dict[str, dict[str, object]] = Field(default_factory=dict)
    assets: dict[str, AssetRecord]


def _checked(model: type[M], path: Path, remedy: str) -> M | None:
    """The model of the JSON file at `path`, None when there is none; StagingFileError naming
    the file, the first key at fault and `remedy` when it is not one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StagingFileError(f"{path} cannot be read: {exc}") from exc
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise StagingFileError(
            f"{path} is not a staging file this facesets reads ({where}: {first['msg']}); "
            f"it was not written by `facesets immich stage`, or by a newer one: {remedy}"
        ) from exc


def read_queue_file(path: Path) -> StagingQueue | None:
    """queue.json, checked; None when there is none."""
    return _checked(StagingQueue, path, "run `facesets immich stage` again, which writes it anew")


def read_state_file(path: Path) -> tuple[dict[str, dict[str, object]], dict[str, AssetRecord]]:
    """state.json's people and asset records, checked; empty when there is none."""
    state = _checked(_StateFile, path, "move it away and stage again")
    return ({}, {}) if state is None else (state.people, state.assets)


class StateBook:
    """state.json (every asset's outcome) and queue.json (what to embed), saved atomically at
    most every `interval_s` while staging and on every way out."""

    def __init__(self, user_dir: Path, user: str, server: str, interval_s: float) -> None:
        self.user_dir = user_dir
        self.state_path = user_dir / layout.IMMICH_STATE
        self.queue_path = user_dir / layout.IMMICH_QUEUE
        self.user = user
        self.server = server
        self.interval_s = interval_s
        self.lock = threading.RLock()
        self.records: dict[str, AssetRecord] = {}
        # Immich's people (id -> name, is_hidden, birth_date), read anew by every run.
        self.people: dict[str, dict[str, object]] = {}
        self._saved_at = time.monotonic()
        self._gap = interval_s

    def load(self) -> None:
        self.people, self.records = read_state_file(self.state_path)

    def get(self, asset_id: str) -> AssetRecord | None:
        with self.lock:
            return self.records.get(asset_id)

    def put(self, asset_id: str, record: AssetRecord) -> None:
        with self.lock:
            self.records[asset_id] = record
            if time.monotonic() - self._saved_at >= self._gap:
                self.save()

    def save(self) -> None:
        with self.lock:
            started = time.monotonic()
            layout.atomic_write_json(
                self.state_path,
                {
                    "version": STATE_VERSION,
                    "user": self.user,
                    "server": self.server,
                    "people": self.people,
                    "assets": {k: record.as_json() for k, record in self.records.items()},
                },
            )
            items = sorted(
                (
                    QueueItem(
                        asset_id=asset_id,
                        path=str(record.path),
                        sha256=str(record.sha256),
                        size=int(record.size or 0),
                        original_path=record.original_path,
                    )
                    for asset_id, record in self.records.items()
                    if record.status == STAGED
                ),
                key=lambda item: item.path,
            )
            queue = StagingQueue(
                version=STATE_VERSION,
                user=self.user,
                root=str(self.user_dir.resolve()),
                items=items,
            )
            layout.atomic_write_json(self.queue_path, queue.model_dump(mode="json"))
            now = time.monotonic()
            # A big library makes each save slow: space saves so they stay a small share.
            self._gap = max(self.interval_s, 10 * (now - started))
            self._saved_at = now


def lacks_faces(record: AssetRecord | None) -> bool:
    """A staged asset recorded before faces (with their people) were kept: its faces are read
    again, the photo is not downloaded again."""
    return record is not None and record.status == STAGED and record.faces is None


def is_done(record: AssetRecord | None, min_face_short: float) -> bool:
    """Whether an earlier outcome still holds; errors and exclusions are decided anew, a
    'no big face' only holds while the threshold is not lowered, and a 'no face' on a recent
    upload is asked again (Immich may not have looked for faces yet)."""
    if record is None or record.status == ERROR:
        return False
    if record.reason == EXCLUDED:
        return False
    if record.reason == NO_BIG_FACE:
        return (record.min_face_short or 0.0) <= min_face_short
    if record.reason == NO_FACE and record.recheck:
        return False
    return record.status in (STAGED, SKIPPED)
