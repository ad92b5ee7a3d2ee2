"""One error policy for every RPC of every service: what an exception a call raised answers.

A servicer raises; it does not pick status codes. The server bootstrap installs `ErrorPolicy`
around every handler, so no RPC answers UNKNOWN and one kind of failure answers alike in each:

- a path outside the service's roots: PERMISSION_DENIED; a path it refuses otherwise (relative,
  not a regular file) and a parameter outside its range: INVALID_ARGUMENT;
- input the job cannot use (a ValueError: a foreign or damaged store, a manifest that does not
  fit, a folder another job writes): FAILED_PRECONDITION;
- the file system: RESOURCE_EXHAUSTED for a full disk, FAILED_PRECONDITION otherwise;
- a call to another service that failed: UNAVAILABLE when it is away, FAILED_PRECONDITION else;
- anything else is a defect: INTERNAL, with the exception logged.

A servicer that already ended the call with `context.abort` keeps the status it chose.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import structlog

from facesets.common.roots import OutsideRootsError, PathRefused
from facesets.contract.fields import InvalidParameter
from facesets.shared.disk import is_disk_full

log = structlog.get_logger(__name__)


class MissingField(InvalidParameter):
    """A request field a job cannot run without."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "", "given")

    def __str__(self) -> str:
        return f"{self.field} is required"


def disk_full_message(error: OSError) -> str:
    """What a client shows for a write that found no room: what failed, and what to do (an
    error that marks itself `disk_full` says so in its own words already)."""
    if getattr(error, "disk_full", False):
        return str(error)
    return f"{error}: the disk is full; free some space and run the same command again"


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and message a call that raised `error` ends with."""
    if isinstance(error, OutsideRootsError):
        return grpc.StatusCode.PERMISSION_DENIED, str(error)
    if isinstance(error, PathRefused | InvalidParameter):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, OSError):
        if is_disk_full(error):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, disk_full_message(error)
        return grpc.StatusCode.FAILED_PRECONDITION, str(error)
    if isinstance(error, sqlite3.DatabaseError):
        return grpc.StatusCode.FAILED_PRECONDITION, f"not a usable facesets store: {error}"
    if isinstance(error, ValueError | LookupError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(error)
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        away = error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        code = grpc.StatusCode.UNAVAILABLE if away else grpc.StatusCode.FAILED_PRECONDITION
        return code, f"a call to another service failed: {error.details()}"
    what = f"{type(error).__name__}: {error}"
    return grpc.StatusCode.INTERNAL, f"internal error ({what}); see the service's log"


def _end(context: grpc.ServicerContext, method: str, error: Exception) -> None:
    if context.code() not in (None, grpc.StatusCode.OK):
        raise error  # the servicer chose its status with context.abort
    code, message = status_of(error)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("call failed", method=method)
    else:
        log.info("call refused", method=method, status=code.name, reason=message)
    context.abort(code, message)


class ErrorPolicy(grpc.ServerInterceptor):
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        serializers: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }

        def streamed(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behaviour(request, context)
                except Exception as error:
                    _end(context, method, error)

            return call

        def single(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behaviour(request, context)
                except Exception as error:
                    _end(context, method, error)

            return call

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                streamed(handler.stream_stream), **serializers
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(single(handler.stream_unary), **serializers)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                streamed(handler.unary_stream), **serializers
            )
        return grpc.unary_unary_rpc_method_handler(single(handler.unary_unary), **serializers)
