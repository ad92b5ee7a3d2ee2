"""The Clustering gRPC service: owns face stores and runs every computation over them."""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog

from facesets.clustering import enrich
from facesets.clustering.convert import face_from_proto, face_record, image_from_item
from facesets.clustering.params import (
    AgeProbeParams,
    AgeSplitParams,
    ClusterParams,
    ConsolidateParams,
    DedupParams,
    DiscoverParams,
    ExtendParams,
    ImportFoldersParams,
    RefineParams,
    RouteParams,
)
from facesets.clustering.store import (
    FaceStore,
    StoreMismatchError,
    StoreProblem,
    StoreWriteError,
    corrupt_store,
    is_corruption,
)
from facesets.common import layout, settings
from facesets.common.folder_lock import run_locked
from facesets.common.jobs import abort_on_os_error, allowed_path, job_events, required_path
from facesets.common.params import InvalidParameter
from facesets.common.roots import Roots
from facesets.v1 import clustering_pb2, clustering_pb2_grpc, common_pb2

log = structlog.get_logger(__name__)
SERVICE_NAME = clustering_pb2.DESCRIPTOR.services_by_name["Clustering"].full_name

# The output folders a job writes, and whether the job may create them.
Writes = tuple[list[Path], bool]

Request = TypeVar("Request")
Params = TypeVar("Params")


def _params(
    build: Callable[[Request], Params], request: Request, context: grpc.ServicerContext
) -> Params:
    """The job's parameters object; a value outside its range ends the call, naming it."""
    try:
        return build(request)
    except InvalidParameter as error:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        raise  # abort raises; this line tells type checkers so


def _capabilities(target: clustering_pb2.EnrichTarget) -> enrich.Capabilities:
    return enrich.Capabilities(target.has_landmark_2d_106, target.has_landmark_3d_68)


# The store the current call works on, for messages about errors raised deep in SQLite.
_call_store: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "call_store", default=None
)


def _abort_on_store_error(context: grpc.ServicerContext, error: BaseException) -> None:
    """End the call with a status and a message that names the store and what to do; an
    error that is no store's is raised again."""
    if isinstance(error, StoreWriteError):
        abort_on_os_error(context, error)
    if isinstance(error, StoreProblem):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
    if is_corruption(error):
        path = _call_store.get()
        log.error("damaged store", store=str(path), error=str(error))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(corrupt_store(path or "", error)))
    if isinstance(error, OSError):  # a store path naming a folder, a missing parent ...
        abort_on_os_error(context, error)
    if isinstance(error, ValueError):  # a request whose contents the service cannot use
        log.info("unusable request", error=str(error))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unusable request: {error}")
    raise error


_STORE_ERRORS = (StoreWriteError, StoreProblem, sqlite3.DatabaseError, OSError, ValueError)


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
            pending=[clustering_pb2.FileEntry(path=p, sha256=s, size=n) for p, s, n in pending],
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
            if batch and (request.flush or len(batch) >= settings.STORE_COMMIT_BATCH):
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
            if len(pending) >= settings.STORE_COMMIT_BATCH:
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

    # --- jobs ----------------------------------------------------------------------------
    def _job(
        self,
        module: str,
        context: grpc.ServicerContext,
        writes: Writes,
        *args: Any,
        **kwargs: Any,
    ) -> Iterator[common_pb2.JobEvent]:
        """Run the job of that name in jobs/; `writes` names the output folders it holds locked.
        Every job takes the service's roots: it reads or links only the store's photos under them.

        Job modules load on first use: dedup alone pulls in OpenCV's feature matching.
        """
        job = getattr(importlib.import_module(f"facesets.clustering.jobs.{module}"), module)
        folders, create = writes
        try:
            yield from job_events(
                lambda progress: run_locked(
                    folders,
                    lambda: job(*args, progress=progress, roots=self.roots, **kwargs),
                    create=create,
                )
            )
        except (StoreWriteError, StoreProblem, sqlite3.DatabaseError) as error:
            _abort_on_store_error(context, error)
        except (ValueError, FileNotFoundError, StoreMismatchError) as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except OSError as error:  # a full disk, a folder it may not write ...
            abort_on_os_error(context, error)

    @_store_errors
    def Cluster(
        self, request: clustering_pb2.ClusterRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(ClusterParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        out = required_path(context, request.out, "out", self.roots)
        yield from self._job("cluster", context, ([out], True), store, out, params)

    @_store_errors
    def Refine(
        self, request: clustering_pb2.RefineRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(RefineParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        out = required_path(context, request.out, "out", self.roots)
        yield from self._job("refine", context, ([out], True), store, out, params)

    @_store_errors
    def Extend(
        self, request: clustering_pb2.ExtendRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(ExtendParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        raw_out = required_path(context, request.raw_out, "raw_out", self.roots)
        refine_out = (
            allowed_path(context, self.roots, request.refine_out, "refine_out")
            if request.refine_out
            else None
        )
        yield from self._job(
            "extend",
            context,
            ([raw_out, *([refine_out] if refine_out else [])], False),
            store,
            raw_out,
            refine_out,
            params,
        )

    @_store_errors
    def Dedup(
        self, request: clustering_pb2.DedupRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(DedupParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        yield from self._job("dedup", context, ([], False), store, params)

    @_store_errors
    def Consolidate(
        self, request: clustering_pb2.ConsolidateRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(ConsolidateParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        folder = required_path(context, request.facesets_dir, "facesets_dir", self.roots)
        yield from self._job("consolidate", context, ([folder], False), folder, store, params)

    @_store_errors
    def Route(
        self, request: clustering_pb2.RouteRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(RouteParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        folder = required_path(context, request.facesets_dir, "facesets_dir", self.roots)
        yield from self._job(
            "route", context, ([folder], True), store, folder, params, sha256=list(request.sha256)
        )

    @_store_errors
    def ImportFolders(
        self, request: clustering_pb2.ImportFoldersRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        from facesets.clustering.jobs.import_folders import Trusted

        params = _params(ImportFoldersParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        export = required_path(context, request.export, "export", self.roots)
        trusted = [
            Trusted(
                t.label,
                required_path(context, t.folder, f"trusted folder of {t.label!r}", self.roots),
            )
            for t in request.trusted
        ]
        mixed = [required_path(context, m, "mixed folder", self.roots) for m in request.mixed]
        plan_dir = export / layout.IMPORT_FOLDERS_DIR
        writes: Writes = ([], False) if params.dry_run else ([plan_dir], True)
        yield from self._job(
            "import_folders", context, writes, store, export, trusted, mixed, params
        )

    @_store_errors
    def Discover(
        self, request: clustering_pb2.DiscoverRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(DiscoverParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        root = required_path(context, request.root, "root", self.roots)
        export = required_path(context, request.export, "export", self.roots)
        plan_dir = export / layout.DISCOVER_DIR
        writes: Writes = ([], False) if params.dry_run else ([plan_dir], True)
        yield from self._job("discover", context, writes, store, root, export, params)

    @_store_errors
    def AgeProbe(
        self, request: clustering_pb2.AgeProbeRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(AgeProbeParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        export_dir = required_path(context, request.export_dir, "export_dir", self.roots)
        faceset = _faceset(request.faceset, context)
        yield from self._job("age_probe", context, ([], False), store, export_dir, faceset, params)

    def _age(
        self, module: str, request: clustering_pb2.AgeSplitRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        params = _params(AgeSplitParams.from_request, request, context)
        store = self.stores.get(request.store, context)
        export_dir = required_path(context, request.export_dir, "export_dir", self.roots)
        faceset = _faceset(request.faceset, context)
        writes: Writes = ([], False) if params.dry_run else ([export_dir], False)
        yield from self._job(module, context, writes, store, export_dir, faceset, params)

    @_store_errors
    def AgeSplit(
        self, request: clustering_pb2.AgeSplitRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        yield from self._age("age_split", request, context)

    @_store_errors
    def AgeExtend(
        self, request: clustering_pb2.AgeSplitRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        yield from self._age("age_extend", request, context)


def _faceset(value: str, context: grpc.ServicerContext) -> str:
    """A faceset of an export by name (faceset_NNN) or number; never a path."""
    name = value.strip()
    if not name or "/" in name or name.startswith("."):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"faceset must name one, not {value!r}")
    return name


def register(servicer: ClusteringServicer) -> Callable[[grpc.Server], None]:
    def add(server: grpc.Server) -> None:
        clustering_pb2_grpc.add_ClusteringServicer_to_server(servicer, server)

    return add
