"""One way to run a facesets service: health checks, reflection, auth, limits, clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from facesets.client.defaults import channel_options
from facesets.common import children, jobs, settings
from facesets.common.error_policy import ErrorPolicy
from facesets.common.security import TlsFiles, TokenInterceptor, check_listen_policy
from facesets.common.stream_limit import StreamLimit
from facesets.contract.layout import atomic_write_bytes

log = structlog.get_logger(__name__)


class PortInUseError(OSError):
    """The address asked for cannot be bound: another process holds the port."""


class TlsMaterialError(ValueError):
    """--tls-cert / --tls-key cannot be read or are no PEM certificate and matching key."""


def tls_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """The server credentials of `tls`, loaded by Python's ssl first: gRPC only answers a
    failed bind for bad material, which would read as a port in use."""
    try:
        cert, key = tls.cert.read_bytes(), tls.key.read_bytes()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # An encrypted key is refused (gRPC takes no passphrase) instead of prompting for one.
        context.load_cert_chain(tls.cert, tls.key, password=lambda: b"")
    except OSError as error:  # ssl.SSLError included
        raise TlsMaterialError(
            f"cannot use the TLS certificate {tls.cert} with the key {tls.key}: "
            f"{_tls_reason(error, tls)}. "
            "--tls-cert takes the server's PEM certificate (chain), --tls-key its PEM private "
            "key, unencrypted"
        ) from error
    return grpc.ssl_server_credentials([(key, cert)])


def _tls_reason(error: OSError, tls: TlsFiles) -> str:
    if not isinstance(error, ssl.SSLError):
        return f"{error.strerror or error} ({error.filename or tls.cert})"
    if b"-----BEGIN CERTIFICATE-----" not in tls.cert.read_bytes():
        return "the certificate file holds no PEM certificate"
    if b"PRIVATE KEY-----" not in tls.key.read_bytes():
        return "the key file holds no PEM private key"
    return "the key is not the certificate's, or one of them is damaged or encrypted"


@dataclass(frozen=True)
class ServeOptions:
    listen: str
    token: str | None = None
    tls: TlsFiles | None = None
    ready_file: Path | None = None  # receives the bound address once serving
    # Read from settings when made, not at import: `serve` checks the settings first.
    max_streams: int = field(
        default_factory=lambda: settings.shared().server.max_concurrent_streams
    )
    unary_threads: int = field(default_factory=lambda: settings.shared().server.rpc_threads_unary)
    max_message_bytes: int = field(  # the per-image limit
        default_factory=lambda: settings.shared().server.max_message_bytes
    )
    # Told the bound address before the server says it serves (e.g. to name a replica).
    on_bound: Callable[[str], None] | None = None


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel options of a server: it receives up to transport_limit_factor times the
    per-image limit, so an image over that limit meets the per-image check (an error result
    for that image) rather than the transport's (the end of the stream)."""
    receive = settings.shared().server.transport_limit_factor * max_message_bytes
    return [
        (key, receive if key == "grpc.max_receive_message_length" else value)
        for key, value in channel_options(max_message_bytes)
    ]


@dataclass
class RunningServer:
    server: grpc.Server
    address: str
    health: health.HealthServicer
    service_names: Sequence[str]

    def stop(self, grace: float | None = None) -> None:
        """`grace`: seconds in-flight calls get (default: the server settings')."""
        if grace is None:
            grace = settings.shared().server.shutdown_grace_s
        for name in (*self.service_names, ""):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()


def notify_systemd(state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (set by systemd for a
    Type=notify unit; absent otherwise, and then nothing is sent)."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target or not hasattr(socket, "AF_UNIX"):
        return
    if target.startswith("@"):  # an abstract socket
        target = "\0" + target[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(target)
            sock.sendall(state.encode())
    except OSError as error:
        log.warning("could not notify systemd", state=state, error=str(error))


def start_server(
    options: ServeOptions,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
) -> RunningServer:
    """Start a server with the given services registered; returns once it listens."""
    check_listen_policy(options.listen, options.token, options.tls)
    interceptors: list[grpc.ServerInterceptor] = (
        [TokenInterceptor(options.token)] if options.token else []
    )
    interceptors.append(StreamLimit(options.max_streams))
    interceptors.append(ErrorPolicy())  # last: closest to the servicers, around every handler
    # Streams hold at most max_streams threads; the rest always answer unary calls.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.max_streams + options.unary_threads),
        interceptors=interceptors,
        # Exclusive ports: with gRPC's default SO_REUSEPORT a second service would start on a
        # port another process listens on, and the two would split the traffic.
        options=[*server_options(options.max_message_bytes), ("grpc.so_reuseport", 0)],
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if options.tls:
            port = server.add_secure_port(options.listen, tls_credentials(options.tls))
        else:
            port = server.add_insecure_port(options.listen)
    except RuntimeError:  # grpcio raises where older releases returned 0
        port = 0
    if port == 0:
        raise PortInUseError(
            f"cannot listen on {options.listen}: another process listens on that port (or the "
            "address is not one of this machine's); stop it or choose another --listen"
        )
    address = f"{options.listen.rsplit(':', 1)[0]}:{port}"
    if options.on_bound:
        options.on_bound(address)
    server.start()
    for name in (*service_names, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if options.ready_file:
        atomic_write_bytes(options.ready_file, address.encode())
    notify_systemd("READY=1")  # Type=notify units start their dependants now
    log.info(
        "serving",
        address=address,
        services=list(service_names),
        auth="token" if options.token else "tls" if options.tls else "loopback-only",
    )
    return RunningServer(server, address, health_servicer, service_names)


def serve_forever(running: RunningServer, on_stop: Callable[[], None] | None = None) -> None:
    """Block until SIGINT/SIGTERM/SIGHUP, then let in-flight calls finish within the grace
    period; the processes its jobs started (ffmpeg) are killed first, so that none goes on
    writing after the service."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down", grace_s=settings.shared().server.shutdown_grace_s)
    notify_systemd("STOPPING=1")
    children.stop_all()
    left = jobs.wait_for_jobs(settings.shared().server.job_cleanup_s)
    if left:
        log.warning("jobs still running at the stop", jobs=left)
    if on_stop:
        on_stop()
    running.stop()
    log.info("stopped")
