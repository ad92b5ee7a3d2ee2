"""Channels to facesets services: message limits, keepalive, bearer tokens, readiness."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from facesets.client import defaults, health
from facesets.client.defaults import channel_options
from facesets.shared.tokens import read_token


class ServiceUnavailableError(ConnectionError):
    """A service stayed unreachable for the whole retry window, or could not be reached at
    all; `reason` names why (see ConnectionProblem)."""

    reason = "unavailable"


class ConnectionProblem(ServiceUnavailableError):
    """A set-up that does not work however long one waits. `reason` is one of UNRESOLVED,
    REFUSED, UNREACHABLE, TLS, PROTOCOL, TOKEN, WRONG_SERVICE, NOT_SERVING; `cause` says what
    was found, `fix` what to do."""

    UNRESOLVED = "unresolved"  # the host name does not resolve
    REFUSED = "refused"  # nothing listens on the port
    UNREACHABLE = "unreachable"  # no answer at all (firewall, wrong network)
    TLS = "tls"  # TLS on one end only, or a certificate the CA did not sign
    PROTOCOL = "protocol"  # something else than gRPC answers (an HTTP/1 server)
    TOKEN = "token"  # the bearer token is missing or wrong
    WRONG_SERVICE = "wrong_service"  # a gRPC server without this service (another port's)
    NOT_SERVING = "not_serving"  # reached, but it did not say SERVING in time

    def __init__(self, address: str, reason: str, cause: str, fix: str) -> None:
        super().__init__(f"{address}: {cause}; {fix}")
        self.address = address
        self.reason = reason
        self.cause = cause
        self.fix = fix


class TokenRefusedError(ConnectionProblem, grpc.RpcError):
    """The service refused the bearer token (UNAUTHENTICATED); an RpcError too, so that code
    that looks at the status code keeps working."""

    def __init__(self, address: str, has_token: bool) -> None:
        super().__init__(
            address,
            ConnectionProblem.TOKEN,
            "the service refused the bearer token (UNAUTHENTICATED)"
            if has_token
            else "the service needs a bearer token (UNAUTHENTICATED)",
            "pass the token file the service was started with (--token-file or "
            "FACESETS_TOKEN_FILE)",
        )

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAUTHENTICATED

    def details(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Endpoint:
    """Where a service listens and how to reach it: a bearer token (or the file holding it)
    and the CA of its TLS certificate."""

    address: str
    token: str | None = None
    tls_ca: Path | None = None  # PEM of the CA (or self-signed cert) to trust
    token_file: Path | None = None  # read when `token` is not given

    def bearer_token(self) -> str | None:
        if self.token is not None:
            return self.token
        return read_token(Path(self.token_file)) if self.token_file else None


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


@dataclass
class _Contact:
    """What a channel's first contact is checked against (see wait_until_serving)."""

    endpoint: Endpoint
    timeout_s: float
    wait_for_ready: bool
    reached: bool = False


_CONTACTS: weakref.WeakKeyDictionary[Any, _Contact] = weakref.WeakKeyDictionary()


def open_channel(
    endpoint: Endpoint,
    balance: str | None = None,
    *,
    timeout: float | None = None,
    wait_for_ready: bool = False,
) -> grpc.Channel:
    """A channel to the endpoint; with `balance` (a service name), round-robin over all the
    replicas the address names, health-checked with that service's name.

    Until the service has answered once, waiting for it ends after `timeout` seconds
    (defaults.CONNECT_TIMEOUT_S) with a ConnectionProblem that says what is wrong; a problem
    that waiting cannot mend (a name that does not resolve, TLS on one end only, another
    protocol, a refused token) ends it at once. `wait_for_ready`: the service is known to be
    starting, so the first contact gets the long retry window too."""
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
    token = endpoint.bearer_token()
    if token:
        channel = grpc.intercept_channel(channel, _BearerToken(token))
    _CONTACTS[channel] = _Contact(
        endpoint, defaults.CONNECT_TIMEOUT_S if timeout is None else timeout, wait_for_ready
    )
    return channel


def wait_until_serving(
    channel: grpc.Channel, service: str = "", window_s: float = defaults.RETRY_WINDOW_S
) -> None:
    """Block until the service's health check says SERVING, with backoff, or give up.

    A channel from open_channel that has not reached its service yet waits its connect timeout
    at most, and a ConnectionProblem says why it failed (see open_channel)."""
    contact = _CONTACTS.get(channel)
    first = contact is not None and not contact.reached and not contact.wait_for_ready
    if first:
        assert contact is not None
        window_s = min(window_s, contact.timeout_s)
    started = time.monotonic()
    deadline = started + window_s
    delay = defaults.RETRY_BACKOFF_S
    last = "no answer"
    problem: ConnectionProblem | None = None
    while True:
        try:
            left = max(0.5, deadline - time.monotonic())
            status = health.check(channel, service, timeout=min(5.0, left) if first else 5.0)
            last = health.STATUS_NAMES.get(status, str(status))
        except grpc.RpcError as error:
            last = f"{error.code().name}: {error.details()}"
            if first and contact is not None:
                if error.code() is grpc.StatusCode.NOT_FOUND:
                    raise ConnectionProblem(
                        contact.endpoint.address,
                        ConnectionProblem.WRONG_SERVICE,
                        f"a gRPC server answers there, but not the {service or 'asked'} service",
                        "check the port: each facesets service listens on its own",
                    ) from error
                problem = diagnose(contact.endpoint, deadline)
                if problem is not None and problem.reason != ConnectionProblem.UNREACHABLE:
                    raise problem from error
        else:
            if status == health.SERVING:
                if contact is not None:
                    if not contact.reached:
                        check_token(channel, contact.endpoint)  # outside the try: it raises
                    contact.reached = True
                return
        if time.monotonic() + delay > deadline:
            if first and contact is not None:
                raise problem or ConnectionProblem(
                    contact.endpoint.address,
                    ConnectionProblem.NOT_SERVING,
                    f"no serving answer within {window_s:g}s ({last})",
                    "check that the service runs and has finished starting (its log says "
                    "when it serves), or allow it longer (timeout / FACESETS_CONNECT_TIMEOUT_S)",
                )
            raise ServiceUnavailableError(f"service not serving after {window_s:.0f}s ({last})")
        time.sleep(delay)
        delay = min(delay * 2, defaults.RETRY_BACKOFF_MAX_S)


_REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
_LIST_SERVICES = b"\x3a\x00"  # ServerReflectionRequest {list_services: ""}


def check_token(channel: grpc.Channel, endpoint: Endpoint) -> None:
    """TokenRefusedError when the service refuses this channel's token (or its lack of one).
    Health checks need no token, so one reflection call (which does) asks."""
    call = channel.stream_stream(
        _REFLECTION, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    try:
        for _ in call(iter([_LIST_SERVICES]), timeout=5):
            break
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.UNAUTHENTICATED:
            raise TokenRefusedError(
                endpoint.address, endpoint.bearer_token() is not None
            ) from error
        # Anything else (no reflection there, a slow answer) leaves the verdict to real calls.


_PROBE_S = 2.0
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def diagnose(endpoint: Endpoint, deadline: float | None = None) -> ConnectionProblem | None:
    """What is wrong with reaching the endpoint, found with plain sockets: the name, the port,
    TLS on one end only or a certificate its CA did not sign, or another protocol. None when
    nothing is found (a gRPC server answers as it should)."""
    for part in replica_addresses(endpoint.address):
        try:
            host, port = _host_port(part)
        except ValueError:
            return None  # a target of gRPC's own (unix:...)
        left = (
            _PROBE_S if deadline is None else max(0.2, min(_PROBE_S, deadline - time.monotonic()))
        )
        try:
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as error:
            return ConnectionProblem(
                part,
                ConnectionProblem.UNRESOLVED,
                f"the name {host} does not resolve ({error.strerror or error})",
                "check the address (HOST:PORT) and this machine's DNS or hosts file",
            )
        try:
            kind, detail = _speaks(host, int(port), endpoint.tls_ca, left)
        except ConnectionRefusedError:
            return ConnectionProblem(
                part,
                ConnectionProblem.REFUSED,
                "connection refused: nothing listens on that port",
                "check the address and that the service runs there",
            )
        except OSError as error:
            return ConnectionProblem(
                part,
                ConnectionProblem.UNREACHABLE,
                f"no answer ({error.strerror or type(error).__name__})",
                "check the address, the network and the firewall",
            )
        if kind == "tls" and endpoint.tls_ca is None:
            return ConnectionProblem(
                part,
                ConnectionProblem.TLS,
                "the service speaks TLS and no CA certificate was given",
                "pass its CA certificate with --tls-ca (FACESETS_TLS_CA, Endpoint(tls_ca=...))",
            )
        if kind == "untrusted":
            return ConnectionProblem(
                part,
                ConnectionProblem.TLS,
                f"its TLS certificate is not trusted by {endpoint.tls_ca} ({detail})",
                "pass the CA that issued the service's certificate with --tls-ca, or a "
                "certificate whose name matches the address",
            )
        if kind == "http1":
            return ConnectionProblem(
                part,
                ConnectionProblem.PROTOCOL,
                f"an HTTP/1 server answers there, not a facesets service ({detail})",
                "check the port",
            )
        if kind == "h2" and endpoint.tls_ca is not None:
            return ConnectionProblem(
                part,
                ConnectionProblem.TLS,
                "the service does not speak TLS, but a CA certificate was given",
                "drop --tls-ca, or start the service with --tls-cert/--tls-key",
            )
        if kind == "other":
            return ConnectionProblem(
                part,
                ConnectionProblem.PROTOCOL,
                f"something that is not a gRPC service answers there ({detail})",
                "check the port",
            )
    return None


def _speaks(host: str, port: int, tls_ca: Path | None, timeout: float) -> tuple[str, str]:
    """What answers at HOST:PORT: "tls" (a TLS server), "untrusted" (TLS, with a certificate
    `tls_ca` does not verify), "h2" (plain HTTP/2, as gRPC), "http1" or "other"."""
    loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    loose.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as raw:
        try:
            with loose.wrap_socket(raw, server_hostname=host):
                pass
            is_tls = True
        except (ssl.SSLError, OSError):
            is_tls = False
    if is_tls:
        if tls_ca is None:
            return "tls", ""
        strict = ssl.create_default_context(cafile=str(tls_ca))
        strict.set_alpn_protocols(["h2"])
        with socket.create_connection((host, port), timeout=timeout) as raw:
            try:
                with strict.wrap_socket(raw, server_hostname=host):
                    return "tls", ""
            except ssl.SSLCertVerificationError as error:
                return "untrusted", str(error.verify_message or error)
            except (ssl.SSLError, OSError):
                return "tls", ""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        try:
            raw.sendall(_H2_PREFACE)
            answer = raw.recv(64)
        except OSError:
            return "other", "it closed the connection"
    if answer.startswith(b"HTTP/"):
        return "http1", answer.split(b"\r\n", 1)[0].decode("latin-1")
    if answer.lstrip().startswith(b"<"):  # an HTML error page without a status line
        return "http1", f"it answered {answer.lstrip()[:15]!r}"
    if len(answer) >= 9 and answer[3] in (0x04, 0x07):  # an HTTP/2 SETTINGS or GOAWAY frame
        return "h2", ""
    return "other", f"first bytes {answer[:16]!r}" if answer else "it closed the connection"


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
            contact = _CONTACTS.get(channel)
            if error.code() is grpc.StatusCode.UNAUTHENTICATED and contact is not None:
                raise TokenRefusedError(
                    contact.endpoint.address, contact.endpoint.bearer_token() is not None
                ) from error
            if not is_transient(error) or time.monotonic() > deadline:
                raise
            wait_until_serving(channel, service, max(1.0, deadline - time.monotonic()))
