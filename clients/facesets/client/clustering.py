"""Typed client of the Clustering service (face stores and the jobs over them)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from facesets.client import defaults
from facesets.client.channel import Endpoint, call_with_retry, open_channel, wait_until_serving
from facesets.client.resumable import ResumableStream, rerun_on_restart
from facesets.contract.clustering import (
    AgeProbeRequest,
    AgeSplitRequest,
    ClusteringJobRequest,
    ClusterRequest,
    ConsolidateRequest,
    DedupRequest,
    DiscoverRequest,
    ExtendRequest,
    ImportFoldersRequest,
    RefineRequest,
    RouteRequest,
)
from facesets.v1 import clustering_pb2, clustering_pb2_grpc, common_pb2

SERVICE = "facesets.v1.Clustering"
Reply = TypeVar("Reply")
REGISTER_CHUNK = 2000  # files per RegisterFiles call


class ClusteringClient:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | None = None,
        wait_for_ready: bool = False,
    ) -> None:
        """`timeout`: how long the first contact may take (defaults.CONNECT_TIMEOUT_S) before a
        ConnectionProblem says what is wrong; `wait_for_ready`: the service is known to be
        starting, so the first contact waits as long as a restart (defaults.RETRY_WINDOW_S)."""
        self.endpoint = endpoint
        self.channel = open_channel(endpoint, timeout=timeout, wait_for_ready=wait_for_ready)
        self.stub = clustering_pb2_grpc.ClusteringStub(self.channel)
        self.restarts = 0
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()  # its open streams end instead of waiting for a restart
        self.channel.close()

    def wait_ready(self, window_s: float = defaults.RETRY_WINDOW_S) -> None:
        wait_until_serving(self.channel, SERVICE, window_s)

    def _unary(self, rpc: Callable[..., Reply], request: object) -> Reply:
        """One unary call, retried while the service restarts."""
        return call_with_retry(
            lambda: rpc(request, timeout=defaults.RPC_TIMEOUT_S), self.channel, SERVICE
        )

    def open_store(
        self, store: str, model_pack: str = "", dim: int = 0
    ) -> clustering_pb2.StoreInfo:
        request = clustering_pb2.OpenStoreRequest(
            store=store, model_pack=model_pack, embedding_dim=dim
        )
        return self._unary(self.stub.OpenStore, request)

    def register_files(
        self, store: str, files: Sequence[clustering_pb2.FileEntry]
    ) -> clustering_pb2.RegisterFilesResponse:
        """Chunked; safe to repeat (registration is idempotent)."""
        total = clustering_pb2.RegisterFilesResponse()
        for start in range(0, len(files), REGISTER_CHUNK):
            reply = self._unary(
                self.stub.RegisterFiles,
                clustering_pb2.RegisterFilesRequest(
                    store=store, files=files[start : start + REGISTER_CHUNK]
                ),
            )
            total.pending.extend(reply.pending)
            total.known += reply.known
            total.aliases_added += reply.aliases_added
        return total

    def lookup_paths(self, store: str, paths: Sequence[str]) -> dict[str, clustering_pb2.FileEntry]:
        """The store's record of each path it has registered (sha256, size, mtime_ns)."""
        found: dict[str, clustering_pb2.FileEntry] = {}
        for start in range(0, len(paths), REGISTER_CHUNK):
            reply = self._unary(
                self.stub.LookupPaths,
                clustering_pb2.LookupPathsRequest(
                    store=store, paths=paths[start : start + REGISTER_CHUNK]
                ),
            )
            found.update((entry.path, entry) for entry in reply.files)
        return found

    def known_content(self, store: str, digests: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(digests), REGISTER_CHUNK):
            reply = self._unary(
                self.stub.KnownContent,
                clustering_pb2.KnownContentRequest(
                    store=store, sha256=digests[start : start + REGISTER_CHUNK]
                ),
            )
            known.update(reply.known)
        return known

    def ingest(self, store: str, items: Iterable[clustering_pb2.IngestItem]) -> Iterator[list[str]]:
        """Stream results into the store; yields the sha256 of each committed batch.

        An item is forgotten only once committed, so a restart of the service re-sends the
        rest; the store never holds an image twice.
        """
        stream = ResumableStream(
            self.channel,
            SERVICE,
            self.stub.Ingest,
            key=lambda request: request.item.file.sha256,
            answers=lambda ack: ack.committed_sha256,
            max_inflight=defaults.STORE_COMMIT_BATCH * 4,
            prologue=lambda: [clustering_pb2.IngestRequest(store=store)],
            closed=self._closed,
        )
        requests = (clustering_pb2.IngestRequest(store=store, item=item) for item in items)
        for ack in stream.run(requests):
            yield list(ack.committed_sha256)
        self.restarts += stream.restarts

    def read_faces(
        self, store: str, with_embeddings: bool = True, face_ids: Sequence[int] = ()
    ) -> Iterator[clustering_pb2.FaceRecord]:
        yield from self.stub.ReadFaces(
            clustering_pb2.ReadFacesRequest(
                store=store, with_embeddings=with_embeddings, face_ids=face_ids
            )
        )

    def photo_under(self, store: str, folder: str) -> str | None:
        """One path of the store's photos inside `folder` (absolute), None when it holds none."""
        reply = self.stub.PhotoUnder(clustering_pb2.PhotoUnderRequest(store=store, folder=folder))
        return reply.path or None

    def read_images(self, store: str) -> Iterator[clustering_pb2.ImageRecord]:
        yield from self.stub.ReadImages(clustering_pb2.ReadImagesRequest(store=store))

    def update_faces(self, updates: Iterable[clustering_pb2.FaceUpdate]) -> int:
        return self.stub.UpdateFaces(iter(updates)).updated

    def lacking_faces(
        self, target: clustering_pb2.EnrichTarget
    ) -> list[clustering_pb2.LackingImage]:
        """Images holding faces that lack what the target's models give (enrich, step 1)."""
        return list(self.stub.LackingFaces(target))

    def enrich_faces(
        self,
        target: clustering_pb2.EnrichTarget,
        detected: Iterable[common_pb2.ImageResult],
    ) -> clustering_pb2.EnrichFacesResponse:
        """Re-detected images in; the service matches and writes their faces (enrich, step 2)."""

        def requests() -> Iterator[clustering_pb2.EnrichFacesRequest]:
            yield clustering_pb2.EnrichFacesRequest(target=target)
            for result in detected:
                yield clustering_pb2.EnrichFacesRequest(detected=result)

        response: clustering_pb2.EnrichFacesResponse = self.stub.EnrichFaces(requests())
        return response

    def stats(self, store: str) -> clustering_pb2.StoreStats:
        return self._unary(self.stub.GetStats, clustering_pb2.StoreRef(store=store))

    def check_store(self, store: str) -> clustering_pb2.StoreCheckReply:
        """SQLite's integrity check and facesets' invariants, one entry per check."""
        return self._unary(self.stub.CheckStore, clustering_pb2.StoreRef(store=store))

    def backup_store(self, store: str, dest: str) -> str:
        """A consistent copy of the store at `dest` (a file, or a folder to put it in)."""
        request = clustering_pb2.BackupStoreRequest(store=store, dest=dest)
        return self._unary(self.stub.BackupStore, request).dest

    def run(self, request: ClusteringJobRequest) -> Iterator[common_pb2.JobEvent]:
        """Any clustering job: progress events, then the outcome; the job runs again from the
        start if the service restarts before it ends (every job is idempotent)."""
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: request.call(self.stub), request.stage
        )

    def cluster(self, request: ClusterRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def refine(self, request: RefineRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def extend(self, request: ExtendRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def dedup(self, request: DedupRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def consolidate(self, request: ConsolidateRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def route(self, request: RouteRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def import_folders(self, request: ImportFoldersRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def discover(self, request: DiscoverRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def age_probe(self, request: AgeProbeRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def age_split(self, request: AgeSplitRequest) -> Iterator[common_pb2.JobEvent]:
        """`age split`, or `age extend` when the request says extend."""
        return self.run(request)
