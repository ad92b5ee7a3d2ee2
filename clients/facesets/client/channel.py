"""Channels to facesets services: message limits, keepalive, bearer tokens, readiness."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from facesets.client import defaults, health
from facesets.client.defaults import channel_options


class ServiceUnavailableError(ConnectionError):
    """A service stayed unreachable for the whole retry window."""


@dataclass(frozen=True)
class Endpoint:
    address: str
    token: str | None = None
    tls_ca: Path | None = None  # PEM of the CA (or self-signed cert) to trust


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return (
            details._replace(metadata=metadata)
            if hasattr(details, "_replace")
            else _Details(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                getattr(details, "wait_for_ready", None),
                getattr(details, "compression", None),
            )
        )

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)


class _Details(grpc.ClientCallDetails):
    def __init__(
        self,
        method: str,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: bool | None,
        compression: Any,
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def open_channel(endpoint: Endpoint) -> grpc.Channel:
    options = channel_options()
    if endpoint.tls_ca is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=endpoint.tls_ca.read_bytes())
        channel = grpc.secure_channel(endpoint.address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(endpoint.address, options=options)
    if endpoint.token:
        channel = grpc.intercept_channel(channel, _BearerToken(endpoint.token))
    return channel


def wait_until_serving(
    channel: grpc.Channel, service: str = "", window_s: float = defaults.RETRY_WINDOW_S
) -> None:
    """Block until the service's health check says SERVING, with backoff, or give up."""
    deadline = time.monotonic() + window_s
    delay = defaults.RETRY_BACKOFF_S
    last = "no answer"
    while True:
        try:
            status = health.check(channel, service, timeout=5)
            if status == health.SERVING:
                return
            last = health.STATUS_NAMES.get(status, str(status))
        except grpc.RpcError as error:
            last = f"{error.code().name}: {error.details()}"
        if time.monotonic() + delay > deadline:
            raise ServiceUnavailableError(f"service not serving after {window_s:.0f}s ({last})")
        time.sleep(delay)
        delay = min(delay * 2, defaults.RETRY_BACKOFF_MAX_S)


RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.CANCELLED,
}


def is_transient(error: grpc.RpcError) -> bool:
    """Errors a restarting server produces; anything else is a real answer."""
    code = error.code()
    if code is grpc.StatusCode.UNAVAILABLE:
        return True
    # A peer that dies mid-stream can surface as these, with transport wording.
    details = (error.details() or "").lower()
    return code in RETRYABLE and any(
        word in details for word in ("socket", "stream removed", "connection", "rst_stream", "eof")
    )


def call_with_retry(call: Callable[[], Any], channel: grpc.Channel, service: str) -> Any:
    """A unary call, retried while the service restarts."""
    deadline = time.monotonic() + defaults.RETRY_WINDOW_S
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if not is_transient(error) or time.monotonic() > deadline:
                raise
            wait_until_serving(channel, service, max(1.0, deadline - time.monotonic()))
