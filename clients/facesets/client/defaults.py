"""Transport defaults shared by the client library and the services.

Defined here, at the bottom of the dependency graph, because the client library installs without
the services; `facesets.common.settings` re-exports every name so that the rest of facesets reads
them from settings as it reads every other default.
"""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # gRPC send/receive limit; an image above it is refused
RPC_TIMEOUT_S = 30.0  # unary calls
STREAM_TIMEOUT_S = 3600.0  # one streaming call
RETRY_ATTEMPTS = 8
RETRY_BACKOFF_S = 0.25
RETRY_BACKOFF_MAX_S = 5.0
RETRY_WINDOW_S = 120.0  # how long a client waits for a restarting service before giving up
# How long the first contact with a service may take before the client says what is wrong (a
# wrong address, TLS, token or protocol); the long window above is for a service known to be
# (re)starting: one reached before, or one the caller started (wait_for_ready).
CONNECT_TIMEOUT_S = 10.0
# A job (cluster, refine, export ...) whose service restarts mid-way is run again from the start
# (every job is idempotent), at most this many times: a job that brings its service down each
# time must end.
JOB_RERUNS = 3
KEEPALIVE_MS = 30_000
STORE_COMMIT_BATCH = 64  # images per store transaction during ingestion
EMBED_INFLIGHT = 64  # images sent ahead of acknowledged results
# Several inference replicas: gRPC balances calls, not messages, so images go over this many
# streams per replica at once, each call carrying at most REPLICA_CALL_IMAGES images before it
# ends and the next call is balanced again (a replica that comes back is picked up that way).
REPLICA_STREAMS = 2
REPLICA_CALL_IMAGES = 8
# Before its first streams, a client of several replicas waits at most this long for each to
# answer once (round robin gives calls only to the replicas its channel has connected so far).
REPLICAS_MEET_S = 3.0
REPLICAS_MEET_POLL_S = 0.02
# How soon a channel tries a replica that went away again (gRPC backs off to 120 s by default).
MAX_RECONNECT_BACKOFF_MS = 2_000


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """gRPC options both ends use: message limits and keepalive."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]
