"""The Clustering gRPC service: owns face stores and runs every computation over them."""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import structlog

from facesets.clustering import enrich
from facesets.clustering.convert import face_from_proto, face_record, image_from_item
from facesets.clustering.jobs import registry
from facesets.clustering.jobs.context import ClusteringJob, JobContext
from facesets.clustering.jobs.job import JobOutcome
from facesets.clustering.store import (
    FaceStore,
    StoreMismatchError,
    StoreProblem,
    StoreWriteError,
    corrupt_store,
    is_corruption,
)
from facesets.clustering.store_tools import backup_store, check_store
from facesets.common import settings
from facesets.common.error_policy import MissingField
from facesets.common.jobs import OutputAmongPhotos, abort_on_os_error, allowed_path, job_events
from facesets.common.progress import ProgressFn
from facesets.common.roots import RelativePathError, Roots
from facesets.shared.folder_lock import run_locked
from facesets.v1 import clustering_pb2, clustering_pb2_grpc, common_pb2

log = structlog.get_logger(__name__)
SERVICE_NAME = clustering_pb2.DESCRIPTOR.services_by_name["Clustering"].full_name


def _capabilities(target: clustering_pb2.EnrichTarget) -> enrich.Capabilities:
    return enrich.Capabilities(target.has_landmark_2d_106, target.has_landmark_3d_68)


# The store the current call works on, for messages about errors raised deep in SQLite.
_call_store: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "call_store", default=None
)


def _abort_on_store_error(context: grpc.ServicerContext, error: BaseException) -> None:
    """End the call with a status and a message that names the store and what to do; any
    other error is raised again."""
    if isinstance(error, StoreWriteError):
        abort_on_os_error(context, error)
    if isinstance(error, StoreProblem):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
    if is_corruption(error):
        path = _call_store.get()
        log.error("damaged store", store=str(path), error=str(error))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(corrupt_store(path or "", error)))
    raise error  # the error policy answers the rest (common/error_policy.py)


_STORE_ERRORS = (StoreWriteError, StoreProblem, sqlite3.DatabaseError)


def _store_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """A store that cannot be used ends the call with a status and a message saying what
    to do (never UNKNOWN)."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            _call_store.set(None)
            try:
                yield from method(self, request, context)
            except _STORE_ERRORS as error:
                _abort_on_store_error(context, error)

        return streaming

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        _call_store.set(None)
        try:
            return method(self, request, context)
        except _STORE_ERRORS as error:
            _abort_on_store_error(context, error)

    return unary


class StoreRegistry:
    """One open FaceStore per store path, shared by every call; only paths the roots allow."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self._stores: dict[Path, FaceStore] = {}
        self._lock = threading.Lock()

    def allowed(self, path: str, context: grpc.ServicerContext) -> Path:
        if not path:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no store path given")
        return allowed_path(context, self.roots, path, "store")

    def get(self, path: str, context: grpc.ServicerContext, create: bool = False) -> FaceStore:
        resolved = self.allowed(path, context)
        _call_store.set(resolved)
        with self._lock:
            store = self._stores.get(resolved)
            if store is not None:
                try:
                    store.check_still_there()
                except StoreProblem as problem:
                    # Refused once; the next call opens whatever file is there then.
                    del self._stores[resolved]
                    store.retire()
                    log.error("store file changed under the service", store=str(resolved))
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(problem))
            if store is None:
                if not create and not resolved.exists():
                    context.abort(grpc.StatusCode.NOT_FOUND, f"no store at {resolved}")
                store = self._stores[resolved] = FaceStore(resolved)
            return store

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


class ClusteringServicer(clustering_pb2_grpc.ClusteringServicer):
    def __init__(self, roots: Roots | None = None) -> None:
        """`roots`: the folders requests may name (none given: no store, no output folder)."""
        self.roots = roots or Roots()
        self.stores = StoreRegistry(self.roots)

    # --- store ---------------------------------------------------------------------------
    @_store_errors
    def OpenStore(
        self, request: clustering_pb2.OpenStoreRequest, context: grpc.ServicerContext
    ) -> clustering_pb2.StoreInfo:
        store = self.stores.get(request.store, context, create=True)
        try:
            meta = (
                store.bind_model(request.model_pack, request.embedding_dim)
                if request.model_pack
                else store.meta()
            )
        except StoreMismatchError as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        return clustering_pb2.StoreInfo(
            store=str(store.path),
            model_pack=meta.get("model_pack", ""),
            embedding_dim=int(meta.get("embedding_dim", 0) or 0),
            schema_version=int(meta.get("schema_version", 0)),
            store_id=meta.get("store_id", ""),
        )

    @_store_errors
    def RegisterFiles(
        self, request: clustering_pb2.RegisterFilesRequest, context: grpc.ServicerContext
    ) -> clustering_pb2.RegisterFilesResponse:
        store = self.stores.get(request.store, context)
        readable = [
            (f.path, f.sha256, f.size, f.mtime_ns) for f in request.files if not f.HasField("error")
        ]
        unreadable = [
            (f.path, common_pb2.ErrorReason.Name(f.error.reason), f.error.message)
            for f in request.files
            if f.HasField("error")
        ]
        store.record_file_errors(unreadable)
        pending, known, aliases = store.register_files(readable)
        return clustering_pb2.RegisterFilesResponse(
            pending=[
                clustering_pb2.FileEntry(path=p, sha256=s, size=n, mtime_ns=t)
                for p, s, n, t in pending
            ],
            known=known,
            aliases_added=aliases,
        )

    @_store_errors
    def LookupPaths(
        self, request: clustering_pb2.LookupPathsRequest, context: grpc.ServicerContext
    ) -> clustering_pb2.LookupPathsResponse:
        if not self.stores.allowed(request.store, context).exists():
            return clustering_pb2.LookupPathsResponse()  # a store not made yet knows no path
        records = self.stores.get(request.store, context).path_records(request.paths)
        return clustering_pb2.LookupPathsResponse(
            files=[
                clustering_pb2.FileEntry(path=path, sha256=sha, size=size, mtime_ns=mtime_ns)
                for path, (sha, size, mtime_ns) in records.items()
            ]
        )

    @_store_errors
    def KnownContent(
        self, request: clustering_pb2.KnownContentRequest, context: grpc.ServicerContext
    ) -> clustering_pb2.KnownContentResponse:
        if not self.stores.allowed(request.store, context).exists():
            return clustering_pb2.KnownContentResponse()  # a store not made yet holds nothing
        store = self.stores.get(request.store, context)
        return clustering_pb2.KnownContentResponse(
            known=sorted(store.known_content(request.sha256))
        )

    @_store_errors
    def Ingest(
        self,
        request_iterator: Iterator[clustering_pb2.IngestRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[clustering_pb2.IngestAck]:
        store: FaceStore | None = None
        batch = []
        for request in request_iterator:
            if store is None:
                store = self.stores.get(request.store, context)
            if request.HasField("item"):
                batch.append(image_from_item(request.item))
            if batch and (request.flush or len(batch) >= settings.clustering().store.commit_batch):
                yield self._commit(store, batch, context)
                batch = []
        if store is not None and batch:
            yield self._commit(store, batch, context)

    @staticmethod
    def _commit(
        store: FaceStore, batch: list, context: grpc.ServicerContext
    ) -> clustering_pb2.IngestAck:
        try:
            committed = store.add_images(batch)
        except StoreMismatchError as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        return clustering_pb2.IngestAck(committed_sha256=committed)

    @_store_errors
    def ReadFaces(
        self, request: clustering_pb2.ReadFacesRequest, context: grpc.ServicerContext
    ) -> Iterator[clustering_pb2.FaceRecord]:
        store = self.stores.get(request.store, context)
        aliases = store.aliases()
        for row in store.iter_face_rows(request.with_embeddings, list(request.face_ids)):
            yield face_record(row, aliases.get(row["sha256"], []))

    @_store_errors
    def ReadImages(
        self, request: clustering_pb2.ReadImagesRequest, context: grpc.ServicerContext
    ) -> Iterator[clustering_pb2.ImageRecord]:
        store = self.stores.get(request.store, context)
        for image in store.images():
            record = clustering_pb2.ImageRecord(
                sha256=image.sha256,
                path=image.path,
                aliases=image.aliases,
                size=image.size,
                width=image.width,
                height=image.height,
                capture_time=image.capture_time,
                face_count=image.face_count,
            )
            if image.error_reason:
                record.error.CopyFrom(
                    common_pb2.ImageError(
                        reason=common_pb2.ErrorReason.Value(image.error_reason),  # type: ignore[arg-type]  # Value() returns the enum's int
                        message=image.error_message,
                    )
                )
            yield record

    @_store_errors
    def UpdateFaces(
        self, request_iterator: Iterator[clustering_pb2.FaceUpdate], context: grpc.ServicerContext
    ) -> clustering_pb2.UpdateFacesResponse:
        updated = 0
        store: FaceStore | None = None
        pending = []
        for update in request_iterator:
            store = store or self.stores.get(update.store, context)
            pending.append((update.face_id, face_from_proto(update.face)))
            if len(pending) >= settings.clustering().store.commit_batch:
                updated += store.update_faces(pending)
                pending = []
        if store is not None and pending:
            updated += store.update_faces(pending)
        return clustering_pb2.UpdateFacesResponse(updated=updated)

    @_store_errors
    def LackingFaces(
        self, request: clustering_pb2.EnrichTarget, context: grpc.ServicerContext
    ) -> Iterator[clustering_pb2.LackingImage]:
        store = self.stores.get(request.store, context)
        for sha256, faces in enrich.lacking_faces(store, _capabilities(request)).items():
            yield clustering_pb2.LackingImage(
                sha256=sha256,
                path=faces[0].path,
                faces_lacking=len(faces),
                faces_earlier_sharpness=sum(face.earlier_sharpness for face in faces),
            )

    @_store_errors
    def EnrichFaces(
        self,
        request_iterator: Iterator[clustering_pb2.EnrichFacesRequest],
        context: grpc.ServicerContext,
    ) -> clustering_pb2.EnrichFacesResponse:
        first = next(request_iterator, None)
        if first is None or not first.HasField("target"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message names the target")
            raise AssertionError("abort raises")  # for the type checker: abort never returns
        store = self.stores.get(first.target.store, context)
        detected = (r.detected for r in request_iterator if r.HasField("detected"))
        counts = enrich.enrich_faces(store, _capabilities(first.target), detected)
        return clustering_pb2.EnrichFacesResponse(
            faces_updated=counts.faces_updated,
            faces_not_found=counts.faces_not_found,
            image_errors=counts.image_errors,
        )

    @_store_errors
    def GetStats(
        self, request: clustering_pb2.StoreRef, context: grpc.ServicerContext
    ) -> clustering_pb2.StoreStats:
        stats = self.stores.get(request.store, context).stats()
        return clustering_pb2.StoreStats(**stats)  # type: ignore[arg-type]  # a dict of the message's own fields

    @_store_errors
    def CheckStore(
        self, request: clustering_pb2.StoreRef, context: grpc.ServicerContext
    ) -> clustering_pb2.StoreCheckReply:
        path = self.stores.allowed(request.store, context)
        _call_store.set(path)
        if not path.exists():
            context.abort(grpc.StatusCode.NOT_FOUND, f"no store at {path}")
        checks = [
            clustering_pb2.StoreCheck(name=line.name, ok=line.ok, detail=line.detail)
            for line in check_store(path)
        ]
        return clustering_pb2.StoreCheckReply(store=str(path), checks=checks)

    @_store_errors
    def BackupStore(
        self, request: clustering_pb2.BackupStoreRequest, context: grpc.ServicerContext
    ) -> clustering_pb2.BackupStoreReply:
        path = self.stores.allowed(request.store, context)
        _call_store.set(path)
        if not path.exists():
            context.abort(grpc.StatusCode.NOT_FOUND, f"no store at {path}")
        if not request.dest.strip():
            raise MissingField("dest")
        dest = self.roots.check(request.dest, "dest")
        return clustering_pb2.BackupStoreReply(dest=str(backup_store(path, dest)))

    @_store_errors
    def PhotoUnder(
        self, request: clustering_pb2.PhotoUnderRequest, context: grpc.ServicerContext
    ) -> clustering_pb2.PhotoUnderReply:
        store = self.stores.get(request.store, context)
        if not os.path.isabs(request.folder) or "\x00" in request.folder:
            raise RelativePathError(f"folder {request.folder!r} is not an absolute path")
        return clustering_pb2.PhotoUnderReply(path=store.photo_under(Path(request.folder)) or "")

    # --- jobs ----------------------------------------------------------------------------
    def _run(
        self, job: ClusteringJob[Any, Any], request: Any, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        """Run a job of the registry the same way for every RPC: its parameters read (refused
        before anything opens), its store opened, its output folders locked while it runs.
        Every job takes the service's roots: it reads or links only the store's photos under
        them. Failures end the call through the error policy."""
        params = job.params.from_request(request)
        ctx = JobContext(request, self.roots, lambda path: self.stores.get(path, context))
        ctx.store  # noqa: B018  # opened here: a missing or foreign store ends the call now
        writes = job.writes(ctx, params)
        for folder in writes.folders:  # refused before a lock file is made among the photos
            photo = ctx.store.photo_under(Path(folder))
            if photo is not None:
                raise OutputAmongPhotos(Path(folder), photo)

        def run(progress: ProgressFn) -> JobOutcome:
            ctx.progress = progress
            return run_locked(writes.folders, lambda: job.run(ctx, params), create=writes.create)

        try:
            yield from job_events(run)
        except (StoreWriteError, StoreProblem, sqlite3.DatabaseError) as error:
            _abort_on_store_error(context, error)

    def Cluster(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.CLUSTER, request, context)

    def Refine(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.REFINE, request, context)

    def Extend(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.EXTEND, request, context)

    def Dedup(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.DEDUP, request, context)

    def Consolidate(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.CONSOLIDATE, request, context)

    def Route(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.ROUTE, request, context)

    def ImportFolders(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.IMPORT_FOLDERS, request, context)

    def Discover(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.DISCOVER, request, context)

    def AgeProbe(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.AGE_PROBE, request, context)

    def AgeSplit(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.AGE_SPLIT, request, context)

    def AgeExtend(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self._run(registry.AGE_EXTEND, request, context)


def register(servicer: ClusteringServicer) -> Callable[[grpc.Server], None]:
    def add(server: grpc.Server) -> None:
        clustering_pb2_grpc.add_ClusteringServicer_to_server(servicer, server)

    return add
