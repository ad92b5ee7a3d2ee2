"""What a service trusts: only files under its --allow-root folders, absolute paths, regular
files; a job removes only what its own manifest inside its folder says it wrote; error messages
never quote a file's bytes; a port is one service's; one id is one input.

Real services on loopback, real files, direct RPC calls as a careless or hostile client makes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from PIL import Image

from facesets.client import ClusteringClient, Endpoint, ImageInput, InferenceClient
from facesets.contract.clustering import ClusterRequest
from facesets.v1 import (
    clustering_pb2,
    common_pb2,
    export_pb2,
    export_pb2_grpc,
    inference_pb2_grpc,
)
from services import ServiceProcess

SECRET = "hunter2-the-password-of-the-day"


def _photo(lfw_dir: Path) -> Path:
    return sorted(lfw_dir.glob("*/*.jpg"))[0]


@pytest.fixture(scope="module")
def confined(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[dict]:
    """An inference service allowed one folder, holding a photo; secrets lie beside it."""
    base = tmp_path_factory.mktemp("confined")
    allowed, outside = base / "allowed", base / "outside"
    allowed.mkdir()
    outside.mkdir()
    shutil.copy(_photo(lfw_dir), allowed / "face.jpg")
    (outside / "secret.txt").write_text(SECRET)
    shutil.copy(_photo(lfw_dir), outside / "face.jpg")
    service = ServiceProcess(
        "inference", free_port(), base / "inference.log", "--workers", "2", roots=[allowed]
    ).start()
    try:
        yield {"service": service, "allowed": allowed, "outside": outside, "base": base}
    finally:
        service.stop()


def _detect(address: str, requests: list[common_pb2.ImageRequest], timeout: float = 60) -> dict:
    with grpc.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        return {r.id: r for r in stub.Detect(iter(requests), timeout=timeout)}


def test_image_paths_outside_the_roots_are_refused_without_saying_whether_they_exist(confined):
    allowed, outside = confined["allowed"], confined["outside"]
    (allowed / "escape.jpg").symlink_to(outside / "face.jpg")
    requests = {
        "inside": str(allowed / "face.jpg"),
        "shadow": "/etc/shadow",
        "environ": "/proc/self/environ",
        "outside": str(outside / "face.jpg"),
        "missing": str(outside / "no-such-file.jpg"),
        "dotdot": str(allowed / ".." / "outside" / "face.jpg"),
        "symlink": str(allowed / "escape.jpg"),
    }
    results = _detect(
        confined["service"].address,
        [common_pb2.ImageRequest(id=k, path=v) for k, v in requests.items()],
    )
    assert not results["inside"].HasField("error") and len(results["inside"].faces) == 1
    for key in ("shadow", "environ", "outside", "missing", "dotdot", "symlink"):
        error = results[key].error
        assert error.reason == common_pb2.ERROR_REASON_UNREADABLE, key
        assert "permission denied" in error.message and "--allow-root" in error.message, key
        assert requests[key] in error.message, key
    # A file that exists and one that does not get the same answer.
    assert results["outside"].error.message.replace("face.jpg", "X") == results[
        "missing"
    ].error.message.replace("no-such-file.jpg", "X")


def test_relative_image_paths_are_refused(confined):
    results = _detect(
        confined["service"].address,
        [
            common_pb2.ImageRequest(id="up", path="../../etc/passwd"),
            common_pb2.ImageRequest(id="here", path="face.jpg"),
        ],
    )
    for key in ("up", "here"):
        assert results[key].error.reason == common_pb2.ERROR_REASON_UNREADABLE
        assert "relative" in results[key].error.message


def test_a_fifo_named_as_an_image_is_refused_and_blocks_no_one(confined):
    allowed = confined["allowed"]
    fifo = allowed / "pipe.jpg"
    if not fifo.exists():
        os.mkfifo(fifo)
    address = confined["service"].address
    fifo_results: dict = {}

    def hostile() -> None:
        fifo_results.update(
            _detect(
                address,
                [common_pb2.ImageRequest(id=f"fifo{i}", path=str(fifo)) for i in range(8)],
                timeout=30,
            )
        )

    thread = threading.Thread(target=hostile)
    thread.start()
    # Another client, meanwhile, is served.
    other = _detect(
        address, [common_pb2.ImageRequest(id="face", path=str(allowed / "face.jpg"))], timeout=30
    )
    thread.join(40)
    assert len(other["face"].faces) == 1
    assert len(fifo_results) == 8
    for result in fifo_results.values():
        assert result.error.reason == common_pb2.ERROR_REASON_UNREADABLE
        assert "not a regular file" in result.error.message
    # A folder named as an image is refused the same way.
    folder = _detect(address, [common_pb2.ImageRequest(id="dir", path=str(allowed))])["dir"]
    assert "not a regular file" in folder.error.message


def _bmp_quoting(text: bytes) -> bytes:
    """A BMP header whose bit-depth field holds two bytes of text."""
    info = struct.pack("<IiiH", 40, 8, 8, 1) + text
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 54) + info


def _png_with_chunk(name: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    data = buffer.getvalue()
    at = data.find(b"IDAT") - 4
    return data[:at] + struct.pack(">I", 5) + name + b"xxxxx" + b"\0\0\0\0" + data[at:]


def test_error_messages_never_quote_the_files_bytes(confined):
    allowed = confined["allowed"]
    files = {
        "bmp": _bmp_quoting(SECRET.encode()),
        "ppm": b"P6\n" + SECRET.encode() + b"\n255\n",
        "png": _png_with_chunk(b"hunt"),
        "tiff": b"II*\x00" + SECRET.encode() * 4,
    }
    requests = []
    for name, data in files.items():
        (allowed / f"bytes.{name}").write_bytes(data)
        requests.append(
            common_pb2.ImageRequest(id=f"{name}-path", path=str(allowed / f"bytes.{name}"))
        )
        requests.append(common_pb2.ImageRequest(id=f"{name}-data", data=data))
    results = _detect(confined["service"].address, requests)
    assert len(results) == 2 * len(files)
    depth = str(struct.unpack("<H", SECRET.encode()[:2])[0])  # the BMP field, as a number
    for key, result in results.items():
        message = result.error.message
        assert result.HasField("error"), key
        for quoted in (SECRET, SECRET[:6], "hunt", depth):
            assert quoted not in message, (key, message)


@pytest.fixture()
def clustering(tmp_path: Path) -> Iterator[tuple[ClusteringClient, Path]]:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    service = ServiceProcess(
        "clustering", free_port(), tmp_path / "clustering.log", roots=[allowed]
    ).start()
    client = ClusteringClient(Endpoint(service.address))
    try:
        yield client, allowed
    finally:
        client.close()
        service.stop()


def _cluster(client: ClusteringClient, store: str, out: str) -> dict:
    events = list(client.run(ClusterRequest(Path(store), Path(out))))
    return json.loads(events[-1].done.summary_json)


def test_cluster_removes_only_files_its_own_manifest_inside_the_folder_lists(clustering):
    client, allowed = clustering
    store = str(allowed / "faces.db")
    client.open_store(store)
    out = allowed / "raw"
    out.mkdir()
    victims = [allowed / "victim.txt", allowed / "victim-absolute.txt"]
    for victim in victims:
        victim.write_text("mine")
    (allowed / "elsewhere").mkdir()
    (out / "person_0001").symlink_to(allowed / "elsewhere")
    (allowed / "elsewhere" / "photo.jpg").write_text("mine too")
    (out / "manifest.json").write_text(
        json.dumps(
            {
                "command": "cluster",
                "written": ["../victim.txt", str(victims[1]), "person_0001/photo.jpg"],
                "pending": ["../../victim.txt"],
            }
        )
    )
    _cluster(client, store, str(out))
    for victim in victims:
        assert victim.read_text() == "mine"
    assert (allowed / "elsewhere" / "photo.jpg").read_text() == "mine too"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["written"] == []


def test_stores_and_output_folders_are_confined_to_the_roots(clustering, tmp_path):
    client, allowed = clustering
    store = str(allowed / "faces.db")
    client.open_store(store)
    stub = client.stub
    with pytest.raises(grpc.RpcError) as caught:
        stub.OpenStore(clustering_pb2.OpenStoreRequest(store=str(tmp_path / "x.db")), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (
        "--allow-root" in caught.value.details()
        and str(tmp_path / "x.db") in caught.value.details()
    )
    assert not (tmp_path / "x.db").exists()
    relative = f"rel-out-{free_port()}"
    for out, code in (
        ("/etc/facesets-out", grpc.StatusCode.PERMISSION_DENIED),
        (str(tmp_path / "out"), grpc.StatusCode.PERMISSION_DENIED),
        (str(allowed / ".." / "out"), grpc.StatusCode.PERMISSION_DENIED),
        (relative, grpc.StatusCode.INVALID_ARGUMENT),
        ("../../out", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        try:
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Cluster(clustering_pb2.ClusterRequest(store=store, out=out), timeout=30))
            assert caught.value.code() == code, out
        finally:
            shutil.rmtree(relative, ignore_errors=True)  # where an unconfined service put it
    assert not (tmp_path / "out").exists()
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetStats(clustering_pb2.StoreRef(store="/etc/passwd"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_export_paths_are_confined_to_the_roots(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    service = ServiceProcess(
        "export",
        free_port(),
        tmp_path / "export.log",
        "--clustering",
        "127.0.0.1:1",
        "--inference",
        "127.0.0.1:1",
        roots=[allowed],
    ).start()
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = export_pb2_grpc.ExportStub(channel)
            good = {
                "store": str(allowed / "faces.db"),
                "refine_manifest": str(allowed / "refined" / "refine_manifest.json"),
                "out": str(allowed / "export"),
            }
            for field, value in (
                ("out", str(tmp_path / "export")),
                ("refine_manifest", "/etc/passwd"),
                ("store", str(tmp_path / "faces.db")),
            ):
                request = export_pb2.ExportSwapRequest(**{**good, field: value})
                with pytest.raises(grpc.RpcError) as caught:
                    list(stub.ExportSwap(request, timeout=30))
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, field
                assert value in caught.value.details()
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Report(export_pb2.ReportRequest(out=str(tmp_path)), timeout=30))
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            # the faceset a video plan matches against is read: it is confined too
            plan = export_pb2.PlanVideosRequest(
                src=str(allowed), out=str(allowed / "plan"), match_dir=str(tmp_path)
            )
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.PlanVideos(plan, timeout=30))
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "match_dir" in caught.value.details()
    finally:
        service.stop()


def test_a_second_service_cannot_take_a_port_in_use(tmp_path):
    port = free_port()
    first = ServiceProcess("clustering", port, tmp_path / "first.log").start()
    second = ServiceProcess("clustering", port, tmp_path / "second.log")
    try:
        with pytest.raises(RuntimeError) as caught:
            second.start()
        assert "another process listens" in str(caught.value)
        assert first.process is not None and first.process.poll() is None
    finally:
        second.stop()
        first.stop()


def test_inputs_sharing_an_id_are_refused_not_dropped(confined):
    client = InferenceClient(Endpoint(confined["service"].address))
    photo = (confined["allowed"] / "face.jpg").read_bytes()
    try:
        with pytest.raises(ValueError, match="share the id 'same'"):
            list(client.detect([ImageInput(id="same", data=photo)] * 70))

        def lazy() -> Iterator[ImageInput]:
            yield ImageInput(id="a", data=photo)
            yield ImageInput(id="b", data=photo)
            yield ImageInput(id="a", data=photo)

        answered = []
        with pytest.raises(ValueError, match="share the id 'a'"):
            for result in client.detect(lazy()):
                answered.append(result.id)
        assert sorted(answered) == ["a", "b"]
    finally:
        client.close()
