"""The standard gRPC health check (grpc.health.v1.Health/Check), spoken with grpcio alone.

The two messages are a string and an enum; encoding them here spares the client library a
dependency on grpcio-health-checking.
"""

from __future__ import annotations

import grpc

CHECK_METHOD = "/grpc.health.v1.Health/Check"
SERVING = 1
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_request(service: str) -> bytes:
    """HealthCheckRequest {string service = 1}."""
    data = service.encode("utf-8")
    return b"\x0a" + _varint(len(data)) + data if data else b""


def decode_status(message: bytes) -> int:
    """HealthCheckResponse {ServingStatus status = 1}; 0 (UNKNOWN) when absent."""
    status, i = 0, 0
    while i < len(message):
        tag = message[i]
        i += 1
        if tag == 0x08:  # field 1, varint
            status, shift = 0, 0
            while True:
                byte = message[i]
                i += 1
                status |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
        else:  # no other field is defined; an unknown one ends the parse
            break
    return status


def check(channel: grpc.Channel, service: str = "", timeout: float = 5.0) -> int:
    """The service's serving status (1: SERVING)."""
    call = channel.unary_unary(
        CHECK_METHOD, request_serializer=encode_request, response_deserializer=decode_status
    )
    return int(call(service, timeout=timeout))
