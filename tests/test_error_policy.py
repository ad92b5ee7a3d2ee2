"""One error policy for every RPC: a store or folder that is a folder, an empty file or a
foreign file is answered with FAILED_PRECONDITION or INVALID_ARGUMENT (NOT_FOUND where nothing
is there), never UNKNOWN or INTERNAL.

Every method of the Clustering and Export services is called, read from the protos themselves
(a new RPC is covered without a change here), against real service processes.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from conftest import free_port
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from facesets.v1 import clustering_pb2, export_pb2
from services import ServiceProcess

ANSWERS = {
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
}
NAMES = {"faceset": "faceset_001", "into": "faceset_002", "run_id": "run-1", "label": "a"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("policy")
    bad = root / "bad"
    bad.mkdir()
    (bad / "folder").mkdir()
    (bad / "empty").write_bytes(b"")
    (bad / "foreign").write_text("these are not the faces you are looking for\n" * 50)
    clustering = ServiceProcess("clustering", free_port(), root / "clustering.log").start()
    export = ServiceProcess(
        "export", free_port(), root / "export.log", "--clustering", clustering.address,
        "--inference", "127.0.0.1:1",
    ).start()  # fmt: skip
    yield bad, {"Clustering": clustering.address, "Export": export.address}
    export.stop()
    clustering.stop()


def _fill(message: Message, path: str) -> Message:
    """Every text field names the bad path (a faceset or run field a plausible name), every
    message field is filled the same way, one element per repeated field."""
    for field in message.DESCRIPTOR.fields:
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            value = NAMES.get(field.name, path)
            if repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.name not in (
            "Face",
            "ImageResult",
        ):
            if repeated:
                _fill(getattr(message, field.name).add(), path)
            else:
                _fill(getattr(message, field.name), path)
    return message


def _methods():
    for module in (clustering_pb2, export_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield service, method


METHODS = list(_methods())


@pytest.mark.parametrize("kind", ["folder", "empty", "foreign"])
@pytest.mark.parametrize("service, method", METHODS, ids=[f"{s.name}.{m.name}" for s, m in METHODS])
def test_every_rpc_answers_a_bad_store_with_a_status_that_says_so(world, service, method, kind):
    bad, addresses = world
    request_type = GetMessageClass(method.input_type)
    reply_type = GetMessageClass(method.output_type)
    request = _fill(request_type(), str(bad / kind))
    path = f"/{service.full_name}/{method.name}"
    channel = grpc.insecure_channel(addresses[service.name])
    try:
        serialize, deserialize = request_type.SerializeToString, reply_type.FromString
        if method.client_streaming and method.server_streaming:
            call = channel.stream_stream(path, serialize, deserialize)
            answer = lambda: list(call(iter([request]), timeout=60))  # noqa: E731
        elif method.client_streaming:
            call = channel.stream_unary(path, serialize, deserialize)
            answer = lambda: call(iter([request]), timeout=60)  # noqa: E731
        elif method.server_streaming:
            call = channel.unary_stream(path, serialize, deserialize)
            answer = lambda: list(call(request, timeout=60))  # noqa: E731
        else:
            call = channel.unary_unary(path, serialize, deserialize)
            answer = lambda: call(request, timeout=60)  # noqa: E731
        try:
            answer()
        except grpc.RpcError as error:
            code = error.code()
            assert code in ANSWERS, f"{method.name} on {kind}: {code.name}: {error.details()}"
            assert error.details(), f"{method.name} on {kind}: {code.name} without a reason"
        else:
            # A call that succeeds must have had nothing to refuse: GetInfo names no path.
            assert not any(
                f.type == FieldDescriptor.TYPE_STRING for f in method.input_type.fields
            ), f"{method.name} accepted {kind} {bad / kind}"
    finally:
        channel.close()
    assert Path(bad / "empty").read_bytes() == b""  # nothing was written into it
