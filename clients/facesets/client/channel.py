"""Channels to facesets services: message limits, keepalive, bearer tokens, readiness."""

from __future__ import annotations

import ipaddress
import json
import socket
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


DNS_SCHEME = "dns:"


def replica_addresses(address: str) -> list[str]:
    """The HOST:PORT parts of `a:p,b:q,...` (a `dns:` target is one part)."""
    if address.strip().startswith(DNS_SCHEME):
        return [address.strip()]
    parts = [part.strip() for part in address.split(",") if part.strip()]
    if not parts:
        raise ValueError(f"no address in {address!r}")
    return parts


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = _dns_name(address).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), port


def _dns_name(address: str) -> str:
    """HOST:PORT of a gRPC `dns:` target (`dns:NAME:PORT`, `dns:///NAME:PORT`, or
    `dns://SERVER/NAME:PORT`); any other address as it is."""
    if not address.startswith(DNS_SCHEME):
        return address
    rest = address[len(DNS_SCHEME) :]
    if rest.startswith("//"):
        rest = rest[2:].partition("/")[2]
    return rest


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def balanced_target(address: str) -> str:
    """The gRPC target of one address or several: `ipv4:a:p,b:q` for several literal addresses
    (gRPC's own resolver then hands all of them to the balancer); one name becomes
    `dns:///NAME:PORT`, and gRPC's DNS resolver gives the balancer every address the name
    resolves to (A and AAAA records, or several lines for it in /etc/hosts)."""
    parts = replica_addresses(address)
    if len(parts) == 1:
        part = parts[0]
        if part.startswith(DNS_SCHEME):
            return part
        try:
            host, _ = _host_port(part)
        except ValueError:
            return part  # not HOST:PORT: gRPC reads it as a target of its own
        return part if _ip_version(host) is not None else f"dns:///{part}"
    versions = {_ip_version(_host_port(part)[0]) for part in parts}
    if versions == {4}:
        return "ipv4:" + ",".join(parts)
    if versions == {6}:
        return "ipv6:" + ",".join(parts)
    raise ValueError(
        f"several replicas ({address}) are given as IP addresses of one kind "
        "(10.0.0.5:50051,10.0.0.6:50051), or as one DNS name that resolves to all of them"
    )


def replica_count(address: str) -> int:
    """How many replicas an address names: its parts, or the addresses one name resolves to
    (through this machine's resolver, as gRPC's resolvers see the same /etc/hosts and DNS)."""
    parts = replica_addresses(address)
    if len(parts) > 1:
        return len(parts)
    try:
        host, port = _host_port(parts[0])
    except ValueError:
        return 1  # a target of gRPC's own (unix:...): the channel reports what is wrong
    if _ip_version(host) is not None:
        return 1
    try:
        found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError:
        return 1  # the channel reports the failure itself
    return max(1, len({info[4][:2] for info in found}))


def balancing_options(health_service: str) -> list[tuple[str, Any]]:
    """Round-robin over every address of the target, each checked with the health service:
    a replica that stops serving (or goes away) gets no new calls until it serves again."""
    config = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": health_service},
    }
    return [
        ("grpc.service_config", json.dumps(config)),
        ("grpc.max_reconnect_backoff_ms", defaults.MAX_RECONNECT_BACKOFF_MS),
    ]


def open_channel(endpoint: Endpoint, balance: str | None = None) -> grpc.Channel:
    """A channel to the endpoint; with `balance` (a service name), round-robin over all the
    replicas the address names, health-checked with that service's name."""
    options: list[tuple[str, Any]] = [*channel_options()]
    target = endpoint.address
    if balance is not None:
        target = balanced_target(endpoint.address)
        options += balancing_options(balance)
    parts = replica_addresses(endpoint.address)
    if endpoint.tls_ca is not None:
        if len(parts) > 1:
            # One name to check every replica's certificate against: the first address's host.
            options.append(("grpc.ssl_target_name_override", _host_port(parts[0])[0]))
        credentials = grpc.ssl_channel_credentials(root_certificates=endpoint.tls_ca.read_bytes())
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
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
