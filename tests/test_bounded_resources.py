"""Bounded resources against careless or hostile clients, on a real inference service: idle
streams leave the service answering, decodes share a memory budget, and an image over the
per-image byte limit is an error result inside a stream that goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from images import flat_png

from facesets.common import settings
from facesets.common.decode import DecodeBudget, DecodeError, decode_cost, open_image
from facesets.common.server import ServeOptions, start_server
from facesets.common.settings import InferenceSettings, RuntimeSettings
from facesets.inference import servicer as inference
from facesets.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from services import ServiceProcess

DECODE_BUDGET = 256 * 1024 * 1024
PHOTO = "George_W_Bush/George_W_Bush_0001.jpg"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("bounded") / "inference.log"
    process = ServiceProcess(
        "inference", free_port(), log, "--workers", "2", "--max-decode-bytes", str(DECODE_BUDGET)
    ).start()
    yield process
    process.stop()


def _channel(address: str) -> grpc.Channel:
    # A direct client with no send limit of its own, as any gRPC client may be.
    return grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)])


def _idle(release: threading.Event) -> Iterator[common_pb2.ImageRequest]:
    release.wait()
    yield from ()


def test_idle_streams_leave_health_info_and_other_streams_answering(
    service: ServiceProcess, lfw_dir: Path
) -> None:
    release = threading.Event()
    channels = [_channel(service.address) for _ in range(20)]  # more than the old 16 threads
    calls = [
        inference_pb2_grpc.InferenceStub(channel).Embed(_idle(release), timeout=120)
        for channel in channels
    ]
    try:
        time.sleep(1.0)  # the calls reach the service and take their threads
        with _channel(service.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = inference_pb2_grpc.InferenceStub(channel)
            info = stub.GetInfo(inference_pb2.GetInfoRequest(), timeout=5)
            assert info.model_pack == "facepack-mini"
            request = common_pb2.ImageRequest(id="real", data=(lfw_dir / PHOTO).read_bytes())
            [result] = list(stub.Embed(iter([request]), timeout=30))
        assert not result.HasField("error") and len(result.faces) == 1
    finally:
        release.set()
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()


def test_streams_beyond_the_cap_are_refused_at_once(model_root: Path) -> None:
    config = InferenceSettings(
        model_root=model_root,
        model_pack="facepack-mini",
        runtime=RuntimeSettings(providers=("cpu",), image_workers=1),
    )
    servicer = inference.build(config)
    running = start_server(
        ServeOptions(listen="127.0.0.1:0", max_streams=2, unary_threads=2),
        inference.register(servicer),
        [inference.SERVICE_NAME],
    )
    release = threading.Event()
    channel = _channel(running.address)
    try:
        stub = inference_pb2_grpc.InferenceStub(channel)
        held = [stub.Detect(_idle(release), timeout=60) for _ in range(2)]
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Detect(iter([common_pb2.ImageRequest(id="x", data=b"x")]), timeout=5))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 2 streaming calls" in (refused.value.details() or "")
        assert stub.GetInfo(inference_pb2.GetInfoRequest(), timeout=5).image_workers == 1
        for call in held:  # a stream that ends gives its place back
            call.cancel()
        time.sleep(0.5)
        [answer] = list(stub.Detect(iter([common_pb2.ImageRequest(id="x", data=b"x")]), timeout=5))
        assert answer.error.reason == common_pb2.ERROR_REASON_NOT_AN_IMAGE
    finally:
        release.set()
        channel.close()
        running.stop(0)


def test_an_image_whose_decode_exceeds_the_budget_is_refused_and_the_stream_goes_on(
    service: ServiceProcess, lfw_dir: Path
) -> None:
    huge = flat_png(10_900, 10_900)  # a few hundred KB; 10,900 x 10,900 pixels decoded
    assert len(huge) < 1_000_000
    requests = [
        common_pb2.ImageRequest(id="huge", data=huge),
        common_pb2.ImageRequest(id="photo", data=(lfw_dir / PHOTO).read_bytes()),
    ]
    with _channel(service.address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        results = {r.id: r for r in stub.Embed(iter(requests), timeout=60)}
    assert results["huge"].error.reason == common_pb2.ERROR_REASON_TOO_MANY_PIXELS
    message = results["huge"].error.message
    assert "10900x10900" in message and "decode budget of 256 MiB" in message
    assert "--max-decode-bytes" in message
    assert len(results["photo"].faces) == 1


def test_decodes_wait_for_room_in_the_budget() -> None:
    image = open_image(flat_png(1000, 1000))
    cost = decode_cost(image, 1.0)
    assert cost >= 1000 * 1000 * 3  # at least the decoded pixels
    budget = DecodeBudget(int(cost * 1.5))
    first_in = threading.Event()
    first_out = threading.Event()
    second_in = threading.Event()

    def first() -> None:
        with budget.reserve(cost, "first"):
            first_in.set()
            first_out.wait(10)

    def second() -> None:
        first_in.wait(10)
        with budget.reserve(cost, "second"):
            second_in.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert first_in.wait(10)
    assert not second_in.wait(0.5)  # no room until the first decode is done
    first_out.set()
    assert second_in.wait(10)
    for thread in threads:
        thread.join(10)
    assert budget.used == 0
    refused = budget.reserve(budget.total + 1, "this image")
    with pytest.raises(DecodeError, match="more than the whole decode budget"), refused:
        pass


def test_an_image_over_the_per_image_limit_is_an_error_result_and_the_stream_goes_on(
    service: ServiceProcess, lfw_dir: Path
) -> None:
    photo = (lfw_dir / PHOTO).read_bytes()
    over = (
        settings.shared().server.max_message_bytes + 1024
    )  # over the per-image limit, under the transport's
    requests = [
        common_pb2.ImageRequest(id="before", data=photo),
        common_pb2.ImageRequest(id="over", data=b"\xff" * over),
        common_pb2.ImageRequest(id="after", data=photo),
    ]
    with _channel(service.address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        results = {r.id: r for r in stub.Detect(iter(requests), timeout=60)}
    assert sorted(results) == ["after", "before", "over"]
    assert results["over"].error.reason == common_pb2.ERROR_REASON_TOO_LARGE
    assert "limit" in results["over"].error.message
    assert len(results["before"].faces) == 1 and len(results["after"].faces) == 1
