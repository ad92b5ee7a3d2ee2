"""The threaded stager: lists the library page by page and runs each asset's chain on a worker
(faces, size filter, download, deduplication, atomic placement), recording every outcome."""

from __future__ import annotations

import os
import queue
import stat
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import structlog

from facesets.orchestrator.console import progress_bar
from facesets.orchestrator.immich.api import (
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
from facesets.orchestrator.immich.config import (
    KnownContent,
    StageConfig,
    StageSetupError,
    StageSummary,
)
from facesets.orchestrator.immich.faces import biggest_face_short, decoded_size
from facesets.orchestrator.immich.paths import (
    PARTIAL_DIR,
    USER_LABEL,
    is_excluded,
    library_relative_path,
)
from facesets.orchestrator.immich.state import (
    DUPLICATE,
    ERROR,
    EXCLUDED,
    IN_STORE,
    NO_BIG_FACE,
    NO_FACE,
    PARTNER,
    SKIPPED,
    STAGED,
    AssetRecord,
    StateBook,
    Status,
    changed_since_staged,
    is_done,
    lacks_faces,
    through_link,
)
from facesets.orchestrator.settings import SETTINGS
from facesets.shared.disk import is_disk_full

log = structlog.get_logger(__name__)


class Stager:
    def __init__(self, config: StageConfig, known_content: KnownContent | None) -> None:
        if not USER_LABEL.match(config.user) or config.user in (".", ".."):
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
        self.book = StateBook(
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
        self.faces_only: set[str] = set()  # staged assets whose faces this run reads again
        self.owner_id: str | None = None
        self.labels: tuple[str, ...] = ()
        self.progress: Any = None  # a tqdm bar, or plain lines where stderr is no terminal

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
        self.progress = progress_bar(
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
            self._read_people()
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
            self._save_state()
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

    def _no_space(self, error: OSError) -> None:
        """The staging disk is full: every further download would fail the same way."""
        with self.lock:
            if self.summary.no_space is None:
                self.summary.no_space = error.strerror or str(error)
                log.error("immich.stage.disk_full", staging_dir=str(self.user_dir))
        self.cancel.set()

    def _save_state(self) -> None:
        """state.json and queue.json; on a full disk, the partial downloads are gone by now and
        the state (a few hundred bytes an asset) may still fit, so it is tried, and said when
        it does not."""
        try:
            self.book.save()
        except OSError as exc:
            self.summary.state_unsaved = exc.strerror or str(exc)
            log.error("immich.stage.state_unsaved", error=str(exc))

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
            self.summary.answered = True
            log.warning(
                "immich.stage.no_user_read",
                note="the API key cannot read its user; partner assets are not told apart",
            )
            return
        self.summary.answered = True
        self.owner_id = me.id
        self.labels = tuple(label for label in (me.storage_label, me.id) if label)

    def _read_people(self) -> None:
        """Every person of the user (names, hidden flags), page by page; a key without
        person.read stages as before, without names."""
        people: dict[str, dict[str, object]] = {}  # Immich id -> PersonState
        page = 1
        try:
            while not self.cancel.is_set():
                result = self.client.people_page(page, SETTINGS.immich.people_page_size)
                people.update({p.id: dict(p.as_json()) for p in result.people})
                if not result.has_next_page or not result.people:
                    break
                page += 1
        except ImmichAuthError as exc:
            if exc.status != 403:
                raise
            log.warning("immich.stage.no_person_read", note="people and names are not read")
            return
        with self.book.lock:
            self.book.people = people
        self.summary.people = len(people)

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
            if record.status == STAGED or record.reason == IN_STORE:
                if record.sha256:
                    self.by_sha.setdefault(record.sha256, asset_id)
                if record.checksum:
                    self.by_checksum.setdefault(record.checksum, asset_id)
            if record.status == STAGED and record.path is not None:
                self.paths[record.path.casefold()] = asset_id

    def _staged_file_intact(self, asset_id: str, record: AssetRecord) -> bool:
        """Whether a staged asset's file is still in place as it was staged: a plain file (no
        link on the way), not changed since (`changed_since_staged`; staged by an older
        version, which kept no time: its size). One deleted, replaced or changed since is
        downloaded again; one found with its bytes under another time keeps that time."""
        path = str(record.path)
        try:
            found = os.lstat(self.user_dir / path)
        except OSError:
            return False
        if not stat.S_ISREG(found.st_mode) or through_link(self.user_dir, path):
            return False
        full = self.user_dir / path
        if changed_since_staged(full, found, record.size, record.mtime_ns, record.sha256):
            return False
        if record.mtime_ns is not None and found.st_mtime_ns != record.mtime_ns:
            self.book.put(asset_id, record.model_copy(update={"mtime_ns": found.st_mtime_ns}))
        return True

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
                elif (record := self.book.get(asset.id)) is not None and (
                    record.status == STAGED and not self._staged_file_intact(asset.id, record)
                ):
                    self._submit(work, asset)
                elif self._faces_only(record):
                    with self.lock:
                        self.faces_only.add(asset.id)
                    self._submit(work, asset)
                elif is_done(record, self.config.min_face_short):
                    with self.lock:
                        self.summary.already_done += 1
                    self._tick()
                else:
                    self._submit(work, asset)
            page = result.next_page
        if self.cancel.is_set() and self.client.outage.is_set():
            self.client.breaker.check()

    def _faces_only(self, record: AssetRecord | None) -> bool:
        """A staged asset whose faces are read again, without a download: one staged before
        faces were kept, or every staged one with --refresh-faces (people merged in Immich)."""
        if record is None or lacks_faces(record):
            return record is not None
        return self.config.refresh_faces and record.status == STAGED

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
            except OSError as exc:
                if is_disk_full(exc):
                    self._no_space(exc)  # the asset stays undone: the next run stages it
                else:
                    self._error(asset, str(exc))
            except ImmichError as exc:
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
        earlier = self.book.get(asset.id)
        with self.lock:
            faces_only = asset.id in self.faces_only
        if faces_only and earlier is not None:
            self.book.put(
                asset.id, earlier.model_copy(update={"faces": [face.as_json() for face in faces]})
            )
            with self.lock:
                self.summary.already_done += 1
            self._tick()
            return
        if not faces:
            # A recent upload may not have been through Immich's face detection yet.
            age = (
                None
                if asset.uploaded_at is None
                else (datetime.now(UTC) - asset.uploaded_at).total_seconds()
            )
            recent = age is not None and age < SETTINGS.immich.no_face_final_after_s
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
                size = decoded_size(tmp)
                size_source = "decoded" if size else "unknown"
                biggest = biggest_face_short(faces, size)
                if biggest is not None and biggest < cfg.min_face_short:
                    self._small(asset, biggest, size_source)
                    return
            self._place(asset, tmp, download.sha256, download.size, biggest, size_source, faces)
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
        faces: Sequence[Face],
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
            if len(relative.parts) > 1 and through_link(self.user_dir, relative.parent.as_posix()):
                raise OSError(
                    f"{destination.parent} is a link or lies under one: nothing is written "
                    "through links in the staging folder"
                )
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, destination)  # a link in its place is replaced, not followed
            mtime_ns = os.lstat(destination).st_mtime_ns
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
            mtime_ns=mtime_ns,
            face_short=None if biggest is None else round(biggest, 1),
            size_source=size_source,
            faces=[face.as_json() for face in faces],
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
    def _finish(self, asset: Asset, status: Status, reason: str = "", **extra: Any) -> None:
        record = AssetRecord(
            status=status,
            reason=reason or None,
            original_path=asset.original_path,
            checksum=asset.checksum or None,
            **{key: value for key, value in extra.items() if value is not None},
        )
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
            asset.id, AssetRecord(status=ERROR, reason=message, original_path=asset.original_path)
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
