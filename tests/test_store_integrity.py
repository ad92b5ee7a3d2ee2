"""A face store that vanishes, is replaced, is no store or is damaged, against a real
clustering service on loopback: every call is refused with FAILED_PRECONDITION, a message
naming the store and what to do, and nothing is written into a file no one can see."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import free_port

from facesets.clustering.store import FaceStore, ImageData, StoreWriteError
from facesets.v1 import clustering_pb2, clustering_pb2_grpc
from services import ServiceProcess

PACK, DIM = "facepack-mini", 128


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[clustering_pb2_grpc.ClusteringStub]:
    log = tmp_path_factory.mktemp("integrity") / "clustering.log"
    service = ServiceProcess("clustering", free_port(), log).start()
    channel = grpc.insecure_channel(service.address)
    yield clustering_pb2_grpc.ClusteringStub(channel)
    channel.close()
    service.stop()


def _open(stub: clustering_pb2_grpc.ClusteringStub, store: Path) -> clustering_pb2.StoreInfo:
    request = clustering_pb2.OpenStoreRequest(store=str(store), model_pack=PACK, embedding_dim=DIM)
    return stub.OpenStore(request, timeout=10)


def _register(
    stub: clustering_pb2_grpc.ClusteringStub, store: Path, name: str
) -> clustering_pb2.RegisterFilesResponse:
    entry = clustering_pb2.FileEntry(path=f"/photos/{name}.jpg", sha256=name * 8, size=10)
    request = clustering_pb2.RegisterFilesRequest(store=str(store), files=[entry])
    return stub.RegisterFiles(request, timeout=10)


def _refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call()  # type: ignore[operator]
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value.details()
    return refused.value


def _filled_store(path: Path, images: int) -> None:
    store = FaceStore(path)
    store.bind_model(PACK, DIM)
    names = [f"{i:064x}" for i in range(images)]
    store.register_files([(f"/photos/{n}.jpg", n, 10) for n in names])
    store.add_images([ImageData(sha256=n, path=f"/photos/{n}.jpg", size=10) for n in names])
    store.close()


def test_a_store_deleted_under_the_service_is_refused_not_written(stub, tmp_path: Path) -> None:
    store = tmp_path / "faces.db"
    _open(stub, store)
    assert len(_register(stub, store, "a").pending) == 1
    store.unlink()  # the write-ahead log stays beside it, as a careless `rm` leaves it
    refused = _refused(lambda: _register(stub, store, "b"))
    assert str(store) in refused.details() and "deleted" in refused.details()
    assert not store.exists()  # nothing written to the path either
    # The next command starts a new store there, which knows nothing of the old one.
    _open(stub, store)
    assert store.exists()
    assert len(_register(stub, store, "a").pending) == 1


def test_a_store_replaced_under_the_service_is_refused_then_the_new_file_used(
    stub, tmp_path: Path
) -> None:
    store = tmp_path / "faces.db"
    _open(stub, store)
    _register(stub, store, "a")
    other = tmp_path / "other.db"
    _filled_store(other, 3)
    os.replace(other, store)
    refused = _refused(lambda: _register(stub, store, "b"))
    assert str(store) in refused.details() and "replaced" in refused.details()
    stats = stub.GetStats(clustering_pb2.StoreRef(store=str(store)), timeout=10)
    assert stats.images == 3  # the file now there, not the one opened before


@pytest.mark.parametrize(
    "content",
    [b"", b"name,age\nalice,30\n", "sqlite"],
    ids=["empty file", "text file", "foreign sqlite database"],
)
def test_open_store_refuses_a_file_that_is_no_store(stub, tmp_path: Path, content) -> None:
    path = tmp_path / "not-a-store.db"
    if content == "sqlite":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE accounts (name TEXT, balance REAL)")
            db.execute("INSERT INTO accounts VALUES ('alice', 3.5)")
        db.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    refused = _refused(lambda: _open(stub, path))
    assert str(path) in refused.details() and "not a facesets store" in refused.details()
    assert path.read_bytes() == before
    assert not (tmp_path / "not-a-store.db-wal").exists()


def test_a_damaged_store_says_which_and_what_to_do(stub, tmp_path: Path) -> None:
    store = tmp_path / "faces.db"
    _filled_store(store, 400)
    with sqlite3.connect(store) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(store.read_bytes())
    assert len(data) > 4 * page_size
    data[page_size:] = b"\xa5" * (len(data) - page_size)  # every page but the schema's
    store.write_bytes(bytes(data))
    for call in (
        lambda: _open(stub, store),
        lambda: stub.GetStats(clustering_pb2.StoreRef(store=str(store)), timeout=10),
        lambda: _register(stub, store, "c"),
    ):
        details = _refused(call).details()
        assert str(store) in details and "damaged" in details
        assert "facesets store check" in details and "disk space" not in details


def test_a_permission_error_says_permission_not_disk_space(tmp_path: Path) -> None:
    store = tmp_path / "faces.db"
    _filled_store(store, 1)
    readonly = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as raised:
        readonly.execute("INSERT INTO meta VALUES ('x', 'y')")
    readonly.close()
    message = str(StoreWriteError(store, raised.value))
    assert "permission" in message and "disk space" not in message and str(store) in message
