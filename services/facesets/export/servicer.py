"""The Export gRPC service: roop-ready facesets, the review report, maintenance runs over an
export and video targets.

Every RPC is an entry of the static registry (jobs/registry.py), installed here with one
handler each: a job streams its progress and then its summary, a query answers at once. Faces
come from the clustering service (which owns the store); each crop's one-face check and every
embedding or ClipScore goes to the inference service. Failures end the call through the error
policy (common/error_policy.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message

from facesets.client import Endpoint
from facesets.common.jobs import job_events
from facesets.common.roots import Roots
from facesets.export.jobs import registry
from facesets.export.jobs.context import ExportJob, ExportQuery, JobContext, Peers
from facesets.shared.folder_lock import run_locked
from facesets.v1 import common_pb2, export_pb2

log = structlog.get_logger(__name__)
SERVICE = export_pb2.DESCRIPTOR.services_by_name["Export"]
SERVICE_NAME = SERVICE.full_name


class ExportServicer:
    """The clustering and inference services it calls are fixed when it starts (`facesets serve
    export --clustering ... --inference ...`, each with its own credentials)."""

    def __init__(
        self,
        clustering: Endpoint | None,
        inference: Endpoint | None,
        roots: Roots | None = None,
    ) -> None:
        self.peers = Peers(clustering, inference)
        self.roots = roots or Roots()  # the folders requests may name; none given: nothing

    def run(
        self, job: ExportJob[Any, Any], request: Message, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        """Run a job of the registry the same way for every RPC: refused at once by a service
        started without a peer it calls, then its parameters read and its paths checked
        against the roots and against what its peers know (before anything is made), its
        folders locked while it runs."""
        wanted = job.calls(request)
        self.peers.require(wanted)
        params = job.params.from_request(request)
        ctx: JobContext[Any] = JobContext(request, self.roots)
        job.check(ctx, params)
        writes = job.writes(ctx, params)
        ctx.connect(self.peers, wanted)

        def run(progress: Any) -> Any:
            ctx.progress = progress
            job.check_with_peers(ctx, params)
            return run_locked(writes.folders, lambda: job.run(ctx, params), create=writes.create)

        try:
            yield from job_events(run)
        except Exception as error:
            refused = job.refusal(error)
            if refused is error:
                raise
            raise refused from error
        finally:
            ctx.close()

    def answer(
        self, query: ExportQuery[Any, Any], request: Message, context: grpc.ServicerContext
    ) -> Message:
        return query.answer(request)


def handlers(servicer: ExportServicer) -> dict[str, grpc.RpcMethodHandler]:
    """One handler per RPC of the Export service, each its registry entry's (found by the
    RPC's request type); an RPC without one, or of another shape, stops the service here."""
    everything: list[ExportJob[Any, Any] | ExportQuery[Any, Any]] = [
        *registry.JOBS,
        *registry.QUERIES,
    ]
    entries = {entry.request.DESCRIPTOR.full_name: entry for entry in everything}
    installed: dict[str, grpc.RpcMethodHandler] = {}
    for method in SERVICE.methods:
        entry = entries.get(method.input_type.full_name)
        if entry is None or method.client_streaming:
            raise TypeError(f"no registry entry runs Export.{method.name}")
        if method.output_type.full_name != entry.reply.DESCRIPTOR.full_name:
            raise TypeError(f"Export.{method.name} answers {method.output_type.full_name}")
        deserialize = entry.request.FromString
        serialize = entry.reply.SerializeToString
        if isinstance(entry, ExportJob) and method.server_streaming:
            installed[method.name] = grpc.unary_stream_rpc_method_handler(
                functools.partial(servicer.run, entry),
                request_deserializer=deserialize,
                response_serializer=serialize,
            )
        elif isinstance(entry, ExportQuery) and not method.server_streaming:
            installed[method.name] = grpc.unary_unary_rpc_method_handler(
                functools.partial(servicer.answer, entry),
                request_deserializer=deserialize,
                response_serializer=serialize,
            )
        else:
            raise TypeError(f"Export.{method.name} is not of its registry entry's shape")
    return installed


def register(servicer: ExportServicer) -> Callable[[grpc.Server], None]:
    def add(server: grpc.Server) -> None:
        methods = handlers(servicer)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, methods),)
        )
        server.add_registered_method_handlers(SERVICE_NAME, methods)

    return add
