"""`facesets immich stage`: copy the photos of an Immich library that show a big enough face.

For every IMAGE asset of the API key's user (POST /search/metadata, page by page), one worker
runs the whole chain: its faces (GET /faces?id=), the size filter, its original
(GET /assets/{id}/original, length-checked, SHA-256 on the fly), deduplication against the face
store and against this library, and an atomic save to

    <staging-root>/<user>/<originalPath relative to the library root>

`<staging-root>/<user>/state.json` records every asset's outcome, so a re-run asks nothing
about an asset already done; `queue.json` lists what the embed step should embed.

Face size. Immich detects faces on the preview, so a face's box is in the pixel space
imageWidth x imageHeight of that preview. The preview keeps the original's aspect ratio (it is
only scaled), so one factor, long edge of the original / long edge of the preview, maps the
box to original pixels whatever the EXIF orientation. The original's size comes from the
asset's width/height, else its exifInfo.exifImageWidth/Height; when neither is known the
original is downloaded first and its header decoded. When even that fails (a format Pillow
cannot read) the asset is kept: the embed step measures faces itself.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import structlog
from tqdm import tqdm

from facesets.client import ServiceUnavailableError
from facesets.common import layout, settings
from facesets.common.decode import open_image
from facesets.common.folder_lock import FolderBusyError, run_locked
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.immich_api import (
    Asset,
    Face,
    ImmichAuthError,
    ImmichCancelled,
    ImmichClient,
    ImmichError,
    ImmichOutage,
    ImmichProtocolError,
    ImmichRequestError,
    ImmichUnavailable,
    RetryPolicy,
)
from facesets.orchestrator.local import ServiceStartError

log = structlog.get_logger(__name__)

KnownContent = Callable[[list[str]], set[str]]


class StageSetupError(Exception):
    """Something needed before staging starts is missing or unreachable."""


STATE_VERSION = 1
PARTIAL_DIR = ".partial"  # downloads in progress, renamed into place when complete

# Outcomes recorded in state.json.
STAGED = "staged"
SKIPPED = "skipped"
ERROR = "error"
NO_FACE = "no_face"
NO_BIG_FACE = "no_big_face"
EXCLUDED = "excluded"
PARTNER = "partner"  # a partner's asset, shared into this user's timeline
DUPLICATE = "duplicate"  # same bytes as another asset of this library
IN_STORE = "in_store"  # same bytes as a photo the face store already holds

EXIT_OK = 0
EXIT_ASSET_ERRORS = 1  # some assets failed; a re-run retries them
EXIT_OUTAGE = 2  # the server went away; state saved, the same command resumes
EXIT_AUTH = 3  # wrong API key, missing permission, or bad configuration
EXIT_BUSY = 4  # another run is staging into the same folder
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class StageConfig:
    url: str
    api_key: str = field(repr=False)
    user: str
    staging_root: Path
    workers: int = settings.IMMICH_WORKERS
    min_face_short: float = settings.IMMICH_MIN_FACE_SHORT
    excludes: tuple[str, ...] = ()
    default_excludes: tuple[str, ...] = settings.IMMICH_EXCLUDE_GLOBS
    page_size: int = settings.IMMICH_PAGE_SIZE
    retries: int = settings.IMMICH_RETRIES
    backoff_s: float = settings.IMMICH_BACKOFF_S
    backoff_max_s: float = settings.IMMICH_BACKOFF_MAX_S
    retry_after_max_s: float = settings.IMMICH_RETRY_AFTER_MAX_S
    breaker_errors: int = settings.IMMICH_BREAKER_ERRORS
    timeout_s: float = settings.IMMICH_TIMEOUT_S
    state_save_interval_s: float = settings.IMMICH_STATE_SAVE_S
    progress: bool = True

    @property
    def user_dir(self) -> Path:
        return Path(self.staging_root) / self.user


@dataclass
class StageSummary:
    user: str
    server: str
    staging_dir: str
    seen: int = 0
    already_done: int = 0  # done by an earlier run: nothing asked
    staged: int = 0
    staged_bytes: int = 0
    in_store: int = 0
    duplicates: int = 0
    no_face: int = 0
    no_big_face: int = 0
    excluded: int = 0
    partner: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    min_face_short: float = 0.0
    outage: bool = False
    interrupted: bool = False
    fatal: str | None = None

    @property
    def processed(self) -> int:
        return self.seen - self.already_done

    @property
    def assets_per_s(self) -> float:
        return self.seen / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return EXIT_AUTH
        if self.outage:
            return EXIT_OUTAGE
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_ASSET_ERRORS if self.errors else EXIT_OK

    def report(self) -> str:
        rows = [
            ("staged", f"{self.staged}  ({self.staged_bytes / 1e6:.1f} MB) -> {self.staging_dir}"),
            ("already done (earlier runs)", self.already_done),
            ("in the face store already", self.in_store),
            ("duplicates within the library", self.duplicates),
            ("skipped: no face", self.no_face),
            (
                "skipped: no big face",
                f"{self.no_big_face}  (short edge < {self.min_face_short:g} px)",
            ),
            ("skipped: excluded", self.excluded),
            ("skipped: a partner's assets", self.partner),
            ("errors", self.errors),
        ]
        lines = [
            f"Immich staging for '{self.user}' ({self.server}): {self.seen} assets seen in "
            f"{self.elapsed_s:.1f} s ({self.assets_per_s:.1f} assets/s)"
        ]
        lines += [f"  {name:<32}{value}" for name, value in rows]
        if self.fatal:
            lines.append(f"stopped: {self.fatal}")
        elif self.outage:
            lines.append(
                "stopped: the Immich server is unreachable; state saved, run the same command "
                "to resume"
            )
        elif self.interrupted:
            lines.append("interrupted; state saved, run the same command to resume")
        elif self.errors:
            lines.append("some assets failed (see state.json); run the same command to retry them")
        return "\n".join(lines)


# --- paths ------------------------------------------------------------------------------------
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f<>:"|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_RESERVED_TOP = {layout.IMMICH_STATE.casefold(), layout.IMMICH_QUEUE.casefold(), PARTIAL_DIR}
_MAX_PART_BYTES = 200
_USER_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def library_relative_path(original_path: str, labels: Iterable[str] = ()) -> PurePosixPath:
    """The part of an Immich originalPath below its library root, made safe to join under a
    staging folder (relative, no `..`, no characters Windows refuses).

    In order: after `library/<label>/` for a known label (the user's storage label or id);
    after `library/<any>/`; after the last `upload/` (dropping a leading user id); else, for an
    external library, the whole path without its root.
    """
    parts = [p for p in original_path.replace("\\", "/").split("/") if p not in ("", ".")]
    if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):
        parts = parts[1:]
    known = {label for label in labels if label}
    rest = parts
    for i, part in enumerate(parts[:-2]):
        if part == "library" and parts[i + 1] in known:
            rest = parts[i + 2 :]
            break
    else:
        if "library" in parts[:-2]:
            i = parts.index("library")
            rest = parts[i + 2 :]
        elif "upload" in parts[:-1]:
            i = len(parts) - 1 - parts[::-1].index("upload")
            rest = parts[i + 1 :]
            if len(rest) > 1 and rest[0] in known:
                rest = rest[1:]
    safe = [_safe_part(p) for p in rest]
    if safe and safe[0].casefold() in _RESERVED_TOP:
        safe[0] = "_" + safe[0]
    return PurePosixPath(*safe) if safe else PurePosixPath("_")


def _safe_part(part: str) -> str:
    part = _UNSAFE_CHARS.sub("_", part).strip().rstrip(". ")
    if part in ("", ".", ".."):
        return "_"
    if _WINDOWS_RESERVED.match(part):
        part = "_" + part
    if len(part.encode("utf-8")) > _MAX_PART_BYTES:
        stem, dot, suffix = part.rpartition(".")
        keep = suffix if dot and len(suffix) <= 16 else ""
        head = (stem if keep else part).encode("utf-8")[: _MAX_PART_BYTES - len(keep) - 1]
        part = head.decode("utf-8", "ignore") + ("." + keep if keep else "")
    return part


def is_excluded(relative: PurePosixPath, original_path: str, globs: Sequence[str]) -> bool:
    """Case-insensitive fnmatch against the library-relative path and the full originalPath;
    `*` crosses folders, so `*/@eaDir/*` matches at any depth."""
    candidates = (
        "/" + relative.as_posix().casefold(),
        original_path.replace("\\", "/").casefold(),
    )
    return any(fnmatch.fnmatchcase(c, glob.casefold()) for glob in globs for c in candidates)


# --- faces ------------------------------------------------------------------------------------
def biggest_face_short(
    faces: Sequence[Face], original_size: tuple[int, int] | None
) -> float | None:
    """The largest face short edge in the original's pixels; None when that needs the
    original's size and it is unknown."""
    best: float | None = None
    for face in faces:
        short = max(0.0, min(face.x2 - face.x1, face.y2 - face.y1))
        space_long = max(face.image_width, face.image_height)
        if space_long > 0:
            if original_size is None:
                return None
            short *= max(original_size) / space_long
        best = short if best is None else max(best, short)
    return best


def _decoded_size(path: Path) -> tuple[int, int] | None:
    try:
        with open_image(path) as image:  # HEIF and AVIF too; only the header is read
            width, height = image.size
    except Exception:  # any format or decoder failure means "unknown", decided by the caller
        return None
    return (width, height) if width > 0 and height > 0 else None


# --- state ------------------------------------------------------------------------------------
class _StateBook:
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
        self.records: dict[str, dict[str, Any]] = {}
        self._saved_at = time.monotonic()
        self._gap = interval_s

    def load(self) -> None:
        data = layout.read_json(self.state_path, default=None)
        if data is None:
            return
        if not isinstance(data, dict) or not isinstance(data.get("assets"), dict):
            raise ValueError(f"{self.state_path} is not a staging state file")
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path} has state version {data.get('version')!r}")
        self.records = data["assets"]

    def get(self, asset_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.records.get(asset_id)

    def put(self, asset_id: str, record: dict[str, Any]) -> None:
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
                    "assets": self.records,
                },
            )
            items = sorted(
                (
                    {
                        "asset_id": asset_id,
                        "path": record["path"],
                        "sha256": record["sha256"],
                        "size": record["size"],
                        "original_path": record["original_path"],
                    }
                    for asset_id, record in self.records.items()
                    if record.get("status") == STAGED
                ),
                key=lambda item: item["path"],
            )
            layout.atomic_write_json(
                self.queue_path,
                {
                    "version": STATE_VERSION,
                    "user": self.user,
                    "root": str(self.user_dir.resolve()),
                    "items": items,
                },
            )
            now = time.monotonic()
            # A big library makes each save slow: space saves so they stay a small share.
            self._gap = max(self.interval_s, 10 * (now - started))
            self._saved_at = now


def _is_done(record: dict[str, Any] | None, min_face_short: float) -> bool:
    """Whether an earlier outcome still holds; errors and exclusions are decided anew, a
    'no big face' only holds while the threshold is not lowered, and a 'no face' on a recent
    upload is asked again (Immich may not have looked for faces yet)."""
    if record is None or record.get("status") == ERROR:
        return False
    if record.get("reason") == EXCLUDED:
        return False
    if record.get("reason") == NO_BIG_FACE:
        return float(record.get("min_face_short", 0.0)) <= min_face_short
    if record.get("reason") == NO_FACE and record.get("recheck"):
        return False
    return record.get("status") in (STAGED, SKIPPED)


# --- the stager --------------------------------------------------------------------------------
class _Stager:
    def __init__(self, config: StageConfig, known_content: KnownContent | None) -> None:
        if not _USER_LABEL.match(config.user) or config.user in (".", ".."):
            raise ValueError(
                f"--user must be a plain folder name (letters, digits, . _ -), got {config.user!r}"
            )
        if config.workers < 1:
            raise ValueError("--workers must be at least 1")
        if not 1 <= config.page_size <= 1000:
            raise ValueError("the page size must be between 1 and 1000 (Immich's limit)")
        self.config = config
        self.known_content = known_content
        self.user_dir = config.user_dir
        self.partial_dir = self.user_dir / PARTIAL_DIR
        self.globs = tuple(config.default_excludes) + tuple(config.excludes)
        self.cancel = threading.Event()
        self.client = ImmichClient(
            config.url,
            config.api_key,
            retry=RetryPolicy(
                retries=config.retries,
                backoff_s=config.backoff_s,
                backoff_max_s=config.backoff_max_s,
                retry_after_max_s=config.retry_after_max_s,
            ),
            breaker_errors=config.breaker_errors,
            timeout_s=config.timeout_s,
            max_connections=config.workers + 2,
            cancel=self.cancel,
        )
        self.book = _StateBook(
            self.user_dir, config.user, self.client.display_url, config.state_save_interval_s
        )
        self.summary = StageSummary(
            user=config.user,
            server=self.client.display_url,
            staging_dir=str(self.user_dir),
            min_face_short=config.min_face_short,
        )
        self.lock = threading.Lock()
        self.known_lock = threading.Lock()
        self.by_sha: dict[str, str] = {}
        self.by_checksum: dict[str, str] = {}
        self.paths: dict[str, str] = {}
        self.owner_id: str | None = None
        self.labels: tuple[str, ...] = ()
        self.progress: tqdm | None = None

    # --- whole run -----------------------------------------------------------------------------
    def run(self) -> StageSummary:
        started = time.monotonic()
        try:
            self.user_dir.mkdir(parents=True, exist_ok=True)
            self.book.load()
        except (OSError, ValueError):
            self.client.close()
            raise
        self._index_records()
        self._clear_partial()
        log.info(
            "immich.stage.start",
            user=self.config.user,
            server=self.client.display_url,
            workers=self.config.workers,
            already_recorded=len(self.book.records),
        )
        self.progress = tqdm(
            unit="asset", desc=f"immich {self.config.user}", disable=not self.config.progress
        )
        work: queue.Queue[Asset | None] = queue.Queue(maxsize=self.config.workers * 4)
        workers = [
            threading.Thread(target=self._worker, args=(work,), name=f"immich-{i}", daemon=True)
            for i in range(self.config.workers)
        ]
        try:
            self._check_store()
            self._identify_user()
            for thread in workers:
                thread.start()
            self._list(work)
        except (ImmichAuthError, StageSetupError) as exc:
            self._fatal(str(exc))
        except (ImmichOutage, ImmichUnavailable) as exc:
            self.summary.outage = True
            log.error("immich.stage.outage", error=str(exc))
        except ImmichCancelled:
            pass
        except (ImmichProtocolError, ImmichRequestError) as exc:
            self._fatal(f"the server does not answer as Immich does: {exc}")
        except KeyboardInterrupt:
            self.summary.interrupted = True
            self.cancel.set()
        finally:
            self._finish_workers(work, workers)
            if self.client.outage.is_set():
                self.summary.outage = True
            self.book.save()
            self._clear_partial(remove=True)
            self.client.close()
            self.progress.close()
            self.summary.elapsed_s = time.monotonic() - started
        log.info(
            "immich.stage.done",
            seen=self.summary.seen,
            staged=self.summary.staged,
            errors=self.summary.errors,
            exit_code=self.summary.exit_code,
        )
        return self.summary

    def _fatal(self, message: str) -> None:
        if self.summary.fatal is None:
            self.summary.fatal = message
            log.error("immich.stage.fatal", error=message)
        self.cancel.set()

    def _check_store(self) -> None:
        if self.known_content is None:
            return
        try:
            self.known_content([])
        except Exception as exc:  # whatever backs the store, it must answer before we download
            raise StageSetupError(f"the face store cannot be queried: {exc}") from None

    def _identify_user(self) -> None:
        try:
            me = self.client.me()
        except ImmichAuthError as exc:
            if exc.status != 403:
                raise
            log.warning(
                "immich.stage.no_user_read",
                note="the API key cannot read its user; partner assets are not told apart",
            )
            return
        self.owner_id = me.id
        self.labels = tuple(label for label in (me.storage_label, me.id) if label)

    def _finish_workers(
        self, work: queue.Queue[Asset | None], workers: list[threading.Thread]
    ) -> None:
        started = [thread for thread in workers if thread.is_alive()]
        for _ in started:
            while True:
                try:
                    work.put(None, timeout=0.2)
                    break
                except queue.Full:
                    if not any(thread.is_alive() for thread in started):
                        break
                except KeyboardInterrupt:
                    self.summary.interrupted = True
                    self.cancel.set()
        for thread in started:
            while thread.is_alive():
                try:
                    thread.join(timeout=0.5)
                except KeyboardInterrupt:
                    self.summary.interrupted = True
                    self.cancel.set()

    def _index_records(self) -> None:
        for asset_id, record in self.book.records.items():
            if record.get("status") == STAGED or record.get("reason") == IN_STORE:
                if record.get("sha256"):
                    self.by_sha.setdefault(record["sha256"], asset_id)
                if record.get("checksum"):
                    self.by_checksum.setdefault(record["checksum"], asset_id)
            if record.get("status") == STAGED:
                self.paths[record["path"].casefold()] = asset_id

    def _clear_partial(self, remove: bool = False) -> None:
        """Downloads cut short by a crash or an exit never become staged files."""
        if self.partial_dir.is_dir():
            for leftover in self.partial_dir.iterdir():
                leftover.unlink(missing_ok=True)
            if remove:
                self.partial_dir.rmdir()

    # --- listing (main thread) -----------------------------------------------------------------
    def _list(self, work: queue.Queue[Asset | None]) -> None:
        seen_ids: set[str] = set()
        page: int | None = 1
        while page is not None and not self.cancel.is_set():
            result = self.client.search_images(page, self.config.page_size)
            for asset in result.items:
                if asset.id in seen_ids or asset.type != "IMAGE":
                    continue  # pages shift when the library changes during a run
                seen_ids.add(asset.id)
                self.summary.seen += 1
                relative = library_relative_path(asset.original_path, self.labels)
                if self.owner_id is not None and asset.owner_id and asset.owner_id != self.owner_id:
                    self._finish(asset, SKIPPED, PARTNER)
                elif is_excluded(relative, asset.original_path, self.globs):
                    self._finish(asset, SKIPPED, EXCLUDED)
                elif _is_done(self.book.get(asset.id), self.config.min_face_short):
                    with self.lock:
                        self.summary.already_done += 1
                    self._tick()
                else:
                    self._submit(work, asset)
            page = result.next_page
        if self.cancel.is_set() and self.client.outage.is_set():
            self.client.breaker.check()

    def _submit(self, work: queue.Queue[Asset | None], asset: Asset) -> None:
        while True:
            if self.cancel.is_set():
                self.client.breaker.check()
                raise ImmichCancelled("listing")
            try:
                work.put(asset, timeout=0.2)
                return
            except queue.Full:
                continue

    # --- one asset (worker threads) ----------------------------------------------------------
    def _worker(self, work: queue.Queue[Asset | None]) -> None:
        while True:
            asset = work.get()
            if asset is None:
                return
            if self.cancel.is_set():
                continue  # drain: what is left stays undone for the next run
            try:
                self._stage_asset(asset)
            except (ImmichOutage, ImmichCancelled):
                continue
            except ImmichAuthError as exc:
                self._fatal(str(exc))
            except (ImmichError, OSError) as exc:
                self._error(asset, str(exc))
            except Exception as exc:  # a bug must not kill the worker and strand the queue
                log.exception("immich.stage.asset_failed", asset_id=asset.id)
                self._error(asset, f"{type(exc).__name__}: {exc}")

    def _stage_asset(self, asset: Asset) -> None:
        cfg = self.config
        if asset.checksum:
            with self.lock:
                first = self.by_checksum.get(asset.checksum)
            if first is not None and first != asset.id:
                self._finish(asset, SKIPPED, DUPLICATE, duplicate_of=first, matched="checksum")
                return
        faces = self.client.faces(asset.id)
        if not faces:
            # A recent upload may not have been through Immich's face detection yet.
            age = (
                None
                if asset.uploaded_at is None
                else (datetime.now(timezone.utc) - asset.uploaded_at).total_seconds()
            )
            recent = age is not None and age < settings.IMMICH_NO_FACE_FINAL_AFTER_S
            self._finish(asset, SKIPPED, NO_FACE, recheck=True if recent else None)
            return
        size = (asset.width, asset.height) if asset.width and asset.height else None
        biggest = biggest_face_short(faces, size)
        if biggest is not None and biggest < cfg.min_face_short:
            self._small(asset, biggest, "metadata")
            return
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{asset.id}.", suffix=".tmp", dir=self.partial_dir)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w+b") as sink:
                download = self.client.download_original(asset.id, sink)
                os.fsync(sink.fileno())
            size_source = "metadata"
            if size is None:
                size = _decoded_size(tmp)
                size_source = "decoded" if size else "unknown"
                biggest = biggest_face_short(faces, size)
                if biggest is not None and biggest < cfg.min_face_short:
                    self._small(asset, biggest, size_source)
                    return
            self._place(asset, tmp, download.sha256, download.size, biggest, size_source)
        finally:
            tmp.unlink(missing_ok=True)

    def _place(
        self,
        asset: Asset,
        tmp: Path,
        sha256: str,
        size: int,
        biggest: float | None,
        size_source: str,
    ) -> None:
        with self.lock:
            first = self.by_sha.setdefault(sha256, asset.id)
        if first != asset.id:
            self._finish(
                asset, SKIPPED, DUPLICATE, duplicate_of=first, matched="sha256", sha256=sha256
            )
            return
        try:
            if self.known_content is not None:
                with self.known_lock:
                    known = sha256 in self.known_content([sha256])
                if known:
                    self._finish(asset, SKIPPED, IN_STORE, sha256=sha256, size=size)
                    return
            relative = self._claim_path(
                library_relative_path(asset.original_path, self.labels), asset.id
            )
            destination = self.user_dir / Path(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, destination)
        except BaseException:
            with self.lock:
                if self.by_sha.get(sha256) == asset.id:
                    del self.by_sha[sha256]
            raise
        self._finish(
            asset,
            STAGED,
            path=relative.as_posix(),
            sha256=sha256,
            size=size,
            face_short=None if biggest is None else round(biggest, 1),
            size_source=size_source,
        )

    def _claim_path(self, relative: PurePosixPath, asset_id: str) -> PurePosixPath:
        """The staging path for an asset; another asset's path gets its id as a suffix."""
        candidate = relative
        width = 8
        with self.lock:
            while True:
                owner = self.paths.setdefault(candidate.as_posix().casefold(), asset_id)
                if owner == asset_id:
                    return candidate
                candidate = relative.with_name(
                    f"{relative.stem}.{asset_id[:width]}{relative.suffix}"
                )
                width += 8

    def _small(self, asset: Asset, biggest: float, size_source: str) -> None:
        self._finish(
            asset,
            SKIPPED,
            NO_BIG_FACE,
            face_short=round(biggest, 1),
            min_face_short=self.config.min_face_short,
            size_source=size_source,
        )

    # --- outcomes ------------------------------------------------------------------------------
    def _finish(self, asset: Asset, status: str, reason: str = "", **extra: Any) -> None:
        record: dict[str, Any] = {
            "status": status,
            "original_path": asset.original_path,
            "checksum": asset.checksum,
        }
        if reason:
            record["reason"] = reason
        record.update({key: value for key, value in extra.items() if value is not None})
        with self.lock:
            if (status == STAGED or reason == IN_STORE) and asset.checksum:
                self.by_checksum.setdefault(asset.checksum, asset.id)
            counts = self.summary
            if status == STAGED:
                counts.staged += 1
                counts.staged_bytes += int(extra.get("size") or 0)
            else:
                field_name = {
                    NO_FACE: "no_face",
                    NO_BIG_FACE: "no_big_face",
                    EXCLUDED: "excluded",
                    PARTNER: "partner",
                    DUPLICATE: "duplicates",
                    IN_STORE: "in_store",
                }[reason]
                setattr(counts, field_name, getattr(counts, field_name) + 1)
        self.book.put(asset.id, record)
        self._tick()

    def _error(self, asset: Asset, message: str) -> None:
        log.warning("immich.stage.asset_error", asset_id=asset.id, error=message)
        with self.lock:
            self.summary.errors += 1
        self.book.put(
            asset.id,
            {"status": ERROR, "reason": message, "original_path": asset.original_path},
        )
        self._tick()

    def _tick(self) -> None:
        if self.progress is None:
            return
        with self.lock:
            self.progress.update(1)
            if self.progress.n % 50 == 0:
                self.progress.set_postfix(
                    staged=self.summary.staged, errors=self.summary.errors, refresh=False
                )


def stage(config: StageConfig, known_content: KnownContent | None = None) -> StageSummary:
    """Stage one user's Immich photos; `known_content` answers which SHA-256 digests the face
    store already holds (None: no store to deduplicate against). One run at a time per user
    folder: a second one is refused with FolderBusyError."""
    return run_locked([config.user_dir], lambda: _Stager(config, known_content).run())


# --- the face store hook ---------------------------------------------------------------------
def store_known_content(opened: Services, store: Path) -> KnownContent:
    """`known_content` backed by the clustering service's KnownContent RPC (the service is
    started locally unless --clustering names one). Asking records nothing in the store."""
    client = opened.clustering()
    path = str(Path(store).expanduser().resolve())

    def known(digests: list[str]) -> set[str]:
        return client.known_content(path, digests)

    return known


# --- command line ------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Stage the photos of an Immich library that show a face big enough for a face set. "
        "Reads IMMICH_URL and IMMICH_API_KEY from the environment."
    )
    parser.epilog = (
        f"exit codes: {EXIT_OK} done; {EXIT_ASSET_ERRORS} some assets failed (a re-run retries "
        f"them); {EXIT_OUTAGE} Immich went away (state saved: the same command resumes); "
        f"{EXIT_AUTH} wrong API key, missing permission or bad configuration; {EXIT_BUSY} "
        "another run is staging into the same folder"
    )
    parser.add_argument("--user", required=True, help="label of this library (a folder name)")
    parser.add_argument(
        "--staging-root",
        type=Path,
        default=Path(settings.IMMICH_STAGING_ROOT),
        help="photos go to STAGING_ROOT/USER/ (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=settings.IMMICH_WORKERS)
    parser.add_argument(
        "--min-face-short",
        type=float,
        default=settings.IMMICH_MIN_FACE_SHORT,
        help="keep photos with a face whose short edge reaches this, in original pixels",
    )
    parser.add_argument(
        "--exclude",
        metavar="GLOB",
        nargs="+",
        action="extend",
        default=[],
        help="skip assets whose path matches (case-insensitive; * crosses folders)",
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="face store: skip photos it already holds"
    )
    parser.add_argument("--page-size", type=int, default=settings.IMMICH_PAGE_SIZE)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_service_arguments(parser, "clustering")  # used with --store only


def run(args: argparse.Namespace) -> int:
    url = os.environ.get("IMMICH_URL", "").strip()
    api_key = os.environ.get("IMMICH_API_KEY", "").strip()
    pairs = (("IMMICH_URL", url), ("IMMICH_API_KEY", api_key))
    missing = [name for name, value in pairs if not value]
    if missing:
        print(f"error: set {' and '.join(missing)} in the environment", file=sys.stderr)
        return EXIT_AUTH
    config = StageConfig(
        url=url,
        api_key=api_key,
        user=args.user,
        staging_root=args.staging_root,
        workers=args.workers,
        min_face_short=args.min_face_short,
        excludes=tuple(args.exclude),
        page_size=args.page_size,
        progress=not args.no_progress,
    )
    try:
        with services(args) as opened:
            known = store_known_content(opened, args.store) if args.store is not None else None
            summary = stage(config, known)
    except FolderBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (ValueError, StageSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except (ServiceUnavailableError, ServiceStartError) as exc:
        print(f"error: the face store cannot be queried: {exc}", file=sys.stderr)
        return EXIT_AUTH
    print(summary.report())
    return summary.exit_code
