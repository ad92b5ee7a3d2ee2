"""Who may listen where: loopback is open; any other address needs a bearer token or TLS."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

AUTH_HEADER = "authorization"


class InsecureListenError(ValueError):
    """A non-loopback address was asked for without a token or TLS."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0-like wildcard: treat as exposed


def check_listen_policy(address: str, token: str | None, tls: TlsFiles | None) -> None:
    if not is_loopback(address) and token is None and tls is None:
        raise InsecureListenError(
            f"refusing to listen on {address} without protection: pass --token-file FILE "
            "(clients then send the token) or --tls-cert/--tls-key, or listen on 127.0.0.1"
        )


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without `authorization: Bearer <token>`; health checks stay open."""

    _OPEN = ("/grpc.health.v1.Health/",)

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(_: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._deny_unary = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny)
        self._deny_us = grpc.unary_stream_rpc_method_handler(deny)
        self._deny_su = grpc.stream_unary_rpc_method_handler(deny)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method.startswith(self._OPEN):
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        offered = str(metadata.get(AUTH_HEADER, "")).encode()
        if hmac.compare_digest(offered, self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            return self._deny_stream
        if handler.request_streaming:
            return self._deny_su
        if handler.response_streaming:
            return self._deny_us
        return self._deny_unary
