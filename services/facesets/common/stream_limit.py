"""A cap on the streaming calls one service runs at once.

gRPC's Python server runs every call on a thread of one pool, and a streaming call keeps its
thread until it ends, even while its client sends nothing. Unbounded, a few idle streams take
every thread and health checks and unary calls wait forever. With this cap the pool is sized
streams + reserve (see server.start_server), so the reserve always answers unary calls, and a
stream beyond the cap is refused at once with RESOURCE_EXHAUSTED instead of queueing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

# Health's Watch never holds a pool thread (the health servicer is non-blocking).
_UNCAPPED = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class StreamLimit(grpc.ServerInterceptor):
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._slots = threading.BoundedSemaphore(max_streams)

    def _enter(self, context: grpc.ServicerContext) -> None:
        """Take a slot for this call, given back when the call ends however it ends."""
        if not self._slots.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this service already runs its limit of {self.max_streams} streaming calls; "
                "retry later (the limit is FACESETS_SERVER__MAX_CONCURRENT_STREAMS)",
            )
        released = threading.Lock()

        def release() -> None:
            if released.acquire(blocking=False):
                self._slots.release()

        if not context.add_callback(release):
            release()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_UNCAPPED):
            return handler
        if not (handler.request_streaming or handler.response_streaming):
            return handler
        serializers: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and handler.response_streaming:
            stream_stream = handler.stream_stream

            def bidi(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                self._enter(context)
                yield from stream_stream(requests, context)

            return grpc.stream_stream_rpc_method_handler(bidi, **serializers)
        if handler.request_streaming:
            stream_unary = handler.stream_unary

            def upload(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                self._enter(context)
                return stream_unary(requests, context)

            return grpc.stream_unary_rpc_method_handler(upload, **serializers)
        unary_stream = handler.unary_stream

        def download(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._enter(context)
            yield from unary_stream(request, context)

        return grpc.unary_stream_rpc_method_handler(download, **serializers)
