"""What every export job declares and what it is given.

A job is a class (one per RPC, listed in jobs/registry.py): its request type, its parameters
class (from the contract), the services it calls, the folders it writes (held under the folder
lock while it runs) and `run(ctx, params)`. The servicer opens every job the same way: the
services it calls first (a service started without them refuses it), then its parameters, its
paths (confined to the roots) and its folders' locks; the error policy
(common/error_policy.py) answers any failure. A query (GetInfo) answers at once, with no job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import grpc
import structlog
from google.protobuf.message import Message

from facesets.client import ClusteringClient, Endpoint, InferenceClient
from facesets.common.error_policy import MissingField
from facesets.common.progress import ProgressFn
from facesets.common.roots import Roots
from facesets.contract.fields import InvalidParameter, Params
from facesets.export.errors import ExportError
from facesets.shared.disk import is_disk_full
from facesets.v1 import common_pb2

log = structlog.get_logger(__name__)

R = TypeVar("R", bound=Message)
P = TypeVar("P", bound=Params)
A = TypeVar("A", bound=Message)

# What a job raises when the request or the export cannot be used (FAILED_PRECONDITION).
JOB_FAILURES: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, ExportError)


@dataclass(frozen=True)
class NoParams(Params):
    """The parameters of a job that takes none beyond its paths."""


class Peer(Enum):
    """A service an export job calls."""

    CLUSTERING = "clustering"
    INFERENCE = "inference"


class JobFailed(ValueError):
    """A job could not run as asked: the request, the export or a peer's answer did not fit
    (the error policy answers FAILED_PRECONDITION with this message)."""


class BadRequest(InvalidParameter):
    """Fields of a request that do not fit together."""

    def __init__(self, message: str) -> None:
        super().__init__("request", "", message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PeerMissing(ValueError):
    """The service was started without a service the job calls."""

    def __init__(self, missing: Sequence[Peer]) -> None:
        names = " and ".join(peer.value for peer in missing)
        flags = " ".join(f"--{peer.value} HOST:PORT" for peer in missing)
        plural = "services" if len(missing) > 1 else "service"
        super().__init__(
            f"this export service was started without the {names} {plural} it calls "
            f"(facesets serve export {flags})"
        )


@dataclass
class Peers:
    """Where the services an export job calls run (fixed when the export service starts)."""

    clustering: Endpoint | None = None
    inference: Endpoint | None = None

    def endpoint(self, peer: Peer) -> Endpoint | None:
        return self.clustering if peer is Peer.CLUSTERING else self.inference

    def require(self, wanted: Sequence[Peer]) -> None:
        """A service started without one the job calls refuses it before reading anything."""
        missing = [peer for peer in wanted if self.endpoint(peer) is None]
        if missing:
            raise PeerMissing(missing)


@dataclass
class JobContext(Generic[R]):
    request: R
    roots: Roots  # what the job may read and write
    progress: ProgressFn = field(default=lambda stage, done, total, message="": None)
    # Clients of the services the job declared it calls, opened before it runs.
    clustering_client: ClusteringClient | None = None
    inference_client: InferenceClient | None = None

    def required(self, value: str, name: str) -> Path:
        """A path field the job cannot run without (empty would mean the service's own
        folder), inside the service's roots."""
        if not value.strip():
            raise MissingField(name)
        return self.roots.check(value, name)

    def optional(self, value: str, name: str) -> Path | None:
        return self.roots.check(value, name) if value else None

    @cached_property
    def out(self) -> Path:
        """The export (or plan) folder every export job works in: its `out` field."""
        return self.required(self.request.out, "out")  # type: ignore[attr-defined]  # every job request has one

    @property
    def clustering(self) -> ClusteringClient:
        assert self.clustering_client is not None, "the job did not declare Peer.CLUSTERING"
        return self.clustering_client

    @property
    def inference(self) -> InferenceClient:
        assert self.inference_client is not None, "the job did not declare Peer.INFERENCE"
        return self.inference_client

    def connect(self, peers: Peers, wanted: Sequence[Peer]) -> None:
        """Clients of the services the job calls (`peers.require` checked they are there)."""
        # Configured peers, known to run: a job waits for one that restarts (or boots).
        if Peer.CLUSTERING in wanted and peers.clustering is not None:
            self.clustering_client = ClusteringClient(peers.clustering, wait_for_ready=True)
        if Peer.INFERENCE in wanted and peers.inference is not None:
            self.inference_client = InferenceClient(peers.inference, wait_for_ready=True)

    def close(self) -> None:
        for client in (self.clustering_client, self.inference_client):
            if client is not None:
                client.close()


@dataclass(frozen=True)
class Writes:
    """The output folders a job holds locked while it runs; `create`: it may make them."""

    folders: Sequence[Path] = field(default_factory=tuple)
    create: bool = False


class ExportJob(ABC, Generic[R, P]):
    """One streaming RPC: progress events while `run` works, then its summary."""

    request: type[R]
    reply: ClassVar[type[Message]] = common_pb2.JobEvent
    params: type[P]
    needs: ClassVar[tuple[Peer, ...]] = ()  # the services it calls
    # What ends a run with FAILED_PRECONDITION (and its message) rather than as a defect.
    failures: ClassVar[tuple[type[Exception], ...]] = JOB_FAILURES
    # A failed call to a peer: named in the message (FAILED_PRECONDITION); None lets the
    # error policy answer it.
    peer_calls: ClassVar[str | None] = None

    def calls(self, request: R) -> tuple[Peer, ...]:
        """The services a run for `request` calls (all it `needs` by default)."""
        return self.needs

    def check(self, ctx: JobContext[R], params: P) -> None:
        """Refuse a request before anything is locked or made (its other paths, fields that
        do not fit together); `writes` checks the folders it names."""

    def writes(self, ctx: JobContext[R], params: P) -> Writes:
        """The folders this run writes: its `out`, not made if missing, by default."""
        return Writes([ctx.out])

    def check_with_peers(self, ctx: JobContext[R], params: P) -> None:
        """Refuse a request on what the peers know, once connected and still before anything
        is locked or made (nothing to check by default)."""

    @abstractmethod
    def run(self, ctx: JobContext[R], params: P) -> Any:
        """The summary (a dict), or an object with `summary` and `manifest_path`."""

    def refusal(self, error: Exception) -> Exception:
        """What the error policy is told of an error the run raised: an error in `failures`,
        a failed peer call and a file system error other than a full disk are the job
        refusing (FAILED_PRECONDITION with their message); the rest as raised."""
        if isinstance(error, self.failures):
            return JobFailed(str(error))
        if isinstance(error, grpc.RpcError) and self.peer_calls is not None:
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            return JobFailed(f"{self.peer_calls}: {details}")
        if isinstance(error, OSError):
            log.error("file system error", error=str(error))
            return error if is_disk_full(error) else JobFailed(str(error))
        return error


class ExportQuery(ABC, Generic[R, A]):
    """One unary RPC that answers at once (no job, no folder)."""

    request: type[R]
    reply: type[A]

    @abstractmethod
    def answer(self, request: R) -> A: ...
