"""`facesets store check` and `facesets store backup` on real stores, one of them written by a
running clustering service while it is backed up."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import free_port

from facesets.clustering.store import FaceData, FaceStore, ImageData
from facesets.clustering.store_tools import backup_store, check_store
from facesets.v1 import clustering_pb2, clustering_pb2_grpc, common_pb2
from services import ServiceProcess, run_facesets


def _store_with_faces(path: Path, images: int = 3) -> None:
    store = FaceStore(path)
    store.bind_model("facepack-mini", 128)
    rng = np.random.default_rng(0)
    items = []
    for i in range(images):
        sha = f"{i:064x}"
        store.register_files([(f"/photos/{i}.jpg", sha, 10)])
        face = FaceData(
            bbox=(1, 2, 30, 40),
            kps=np.zeros((5, 2), np.float32),
            det_score=0.9,
            embedding=rng.standard_normal(128).astype(np.float32),
            face_short=28.0,
            blur=10.0,
        )
        items.append(ImageData(sha256=sha, path=f"/photos/{i}.jpg", size=10, faces=[face]))
    store.add_images(items)
    store.close()


@pytest.fixture(scope="module")
def clustering(module_clustering: list[str]) -> list[str]:
    """The module's clustering service (a command's own start-up is tested elsewhere)."""
    return module_clustering


def test_check_passes_a_sound_store_and_names_each_broken_invariant(
    tmp_path: Path, clustering: list[str]
) -> None:
    store = tmp_path / "faces.db"
    _store_with_faces(store)
    sound = run_facesets("store", "check", str(store), *clustering, timeout=60)
    assert sound.returncode == 0, sound.stdout + sound.stderr
    assert "PROBLEM" not in sound.stdout and "sqlite integrity" in sound.stdout

    with sqlite3.connect(store) as db:
        db.execute(
            "INSERT INTO faces (sha256, face_index, x1, y1, x2, y2, kps, det_score, face_short, "
            "blur) VALUES ('f' || printf('%063d', 0), 0, 0, 0, 1, 1, x'00', 0.5, 1, 1)"
        )
        db.execute("UPDATE faces SET embedding = x'00000000' WHERE face_id = 1")
        db.execute(
            "INSERT INTO images (sha256, path, size, added_at) VALUES ('e' || printf('%063d', 0),"
            " '/photos/nowhere.jpg', 1, 0)"
        )
    db.close()
    broken = run_facesets("store", "check", str(store), *clustering, timeout=60)
    assert broken.returncode == 1
    problems = [line for line in broken.stdout.splitlines() if line.startswith("PROBLEM")]
    assert any("every face has its image: 1 faces" in line for line in problems)
    assert any("embedding sizes match the metadata: 1 embeddings" in line for line in problems)
    assert any("every image has a path: 1 images" in line for line in problems)


def test_check_reports_a_damaged_file_and_refuses_a_foreign_one(
    tmp_path: Path, clustering: list[str]
) -> None:
    store = tmp_path / "faces.db"
    _store_with_faces(store, images=200)
    data = bytearray(store.read_bytes())
    data[8192:] = b"\x5a" * (len(data) - 8192)
    store.write_bytes(bytes(data))
    damaged = run_facesets("store", "check", str(store), *clustering, timeout=60)
    assert damaged.returncode == 1 and "PROBLEM" in damaged.stdout

    foreign = tmp_path / "notes.db"
    foreign.write_text("not a store")
    refused = run_facesets("store", "check", str(foreign), *clustering, timeout=60)
    assert refused.returncode == 2 and "not a facesets store" in refused.stderr
    assert foreign.read_text() == "not a store"
    # A folder named as the store: what to name instead, not "[Errno 21] Is a directory".
    folder = tmp_path / "stores"
    folder.mkdir()
    refused = run_facesets("store", "check", str(folder), *clustering, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert f"{folder} is a folder, not a facesets store" in refused.stderr
    assert str(folder / "faces.db") in refused.stderr and not any(folder.iterdir())


def test_commands_reading_a_store_name_a_folder_given_as_one(tmp_path: Path) -> None:
    """cluster, refine and age read a store that must exist: a folder named as one says so
    and names the file to give, where it said "no face store" and to embed into the folder."""
    folder = tmp_path / "run"
    folder.mkdir()
    export = tmp_path / "export"
    for args in (
        ("cluster", str(folder), str(tmp_path / "people")),
        ("refine", str(folder), str(tmp_path / "sets")),
        ("age", "probe", str(export), "faceset_001", "--store", str(folder)),
    ):
        refused = run_facesets(*args, timeout=60)
        assert refused.returncode == 1, (args, refused.stderr)
        assert f"{folder} is a folder, not a facesets store" in refused.stderr, refused.stderr
        assert str(folder / "faces.db") in refused.stderr and "facesets embed" not in refused.stderr
    assert not any(folder.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _item(i: int) -> clustering_pb2.IngestItem:
    rng = np.random.default_rng(i)
    faces = [
        common_pb2.Face(
            bbox=[1, 2, 40, 50],
            kps=[float(v) for v in range(10)],
            det_score=0.9,
            face_short=38.0,
            blur=5.0,
            embedding=rng.standard_normal(128).astype("<f4").tobytes(),
            embedding_dim=128,
        )
        for _ in range(2)
    ]
    file = clustering_pb2.FileEntry(path=f"/photos/{i}.jpg", sha256=f"{i:064x}", size=100)
    return clustering_pb2.IngestItem(
        file=file, result=common_pb2.ImageResult(id=str(i), width=64, height=64, faces=faces)
    )


def test_backups_taken_while_the_service_writes_are_consistent(
    tmp_path: Path, clustering: list[str]
) -> None:
    images = 300
    store = tmp_path / "faces.db"
    backups = tmp_path / "backups"
    backups.mkdir()  # a backup creates no folder
    service = ServiceProcess("clustering", free_port(), tmp_path / "clustering.log").start()
    channel = grpc.insecure_channel(service.address)
    try:
        stub = clustering_pb2_grpc.ClusteringStub(channel)
        stub.OpenStore(
            clustering_pb2.OpenStoreRequest(
                store=str(store), model_pack="facepack-mini", embedding_dim=128
            ),
            timeout=10,
        )
        stub.RegisterFiles(
            clustering_pb2.RegisterFilesRequest(
                store=str(store), files=[_item(i).file for i in range(images)]
            ),
            timeout=30,
        )

        def requests() -> Iterator[clustering_pb2.IngestRequest]:
            for i in range(images):  # one transaction per image, as a slow embed commits
                yield clustering_pb2.IngestRequest(store=str(store), item=_item(i), flush=True)
                time.sleep(0.01)

        acks: list[int] = []
        writer = threading.Thread(
            target=lambda: acks.extend(
                len(a.committed_sha256) for a in stub.Ingest(requests(), timeout=120)
            )
        )
        writer.start()
        taken: list[Path] = []
        while writer.is_alive():
            taken.append(backup_store(store, backups / f"{len(taken)}.db"))
            time.sleep(0.05)
        writer.join()
        assert sum(acks) == images
    finally:
        channel.close()
        service.stop()
    counts = []
    for backup in taken:
        lines = check_store(backup)
        assert all(line.ok for line in lines), [str(line) for line in lines]
        db = sqlite3.connect(backup)
        counts.append(db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])
        db.close()
    # Some were taken mid-way, each holding whole images only (two faces each).
    assert any(0 < count < 2 * images for count in counts), counts
    assert all(count % 2 == 0 for count in counts)

    # The command: a backup into a folder, atomic (no temporary file left), whose check passes.
    made = run_facesets("store", "backup", str(store), str(backups), *clustering, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (backups / "faces.db").is_file()
    assert not [p for p in backups.iterdir() if p.name.startswith(".")]
    checked = run_facesets("store", "check", str(backups / "faces.db"), *clustering, timeout=60)
    assert checked.returncode == 0, checked.stdout
