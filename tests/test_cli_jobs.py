"""The clustering commands through the `facesets` CLI and a real clustering service process."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import free_port

from facesets.contract import layout
from services import FACESETS, ServiceProcess, run_facesets

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")


def facesets(*args: str) -> dict:
    done = run_facesets(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def setup(lfw_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    src = root / "photos"
    for person in PEOPLE:
        (src / person).mkdir(parents=True)
        for photo in sorted((lfw_dir / person).glob("*.jpg"))[:6]:
            shutil.copy(photo, src / person / photo.name)
    # A re-encoded copy of one photo: a visual near-duplicate.
    original = src / "Tony_Blair" / "Tony_Blair_0001.jpg"
    image = cv2.imread(str(original))
    cv2.imwrite(str(src / "copy_q60.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    service = ServiceProcess("clustering", free_port(), root / "clustering.log").start()
    # One inference service for the module's two embeds (their start-up is tested elsewhere).
    inference = ServiceProcess("inference", free_port(), root / "inference.log").start()
    store = root / "faces.db"
    embed_at = ["--clustering", service.address, "--inference", inference.address]
    facesets("embed", str(src), str(store), *embed_at)
    yield root, src, store, service, embed_at
    inference.stop()
    service.stop()


def test_cluster_refine_extend_dedup_consolidate(setup, lfw_dir):
    root, src, store, service, embed_at = setup
    at = ["--clustering", service.address]
    raw = facesets("cluster", str(store), str(root / "raw"), *at)
    assert raw["persons"] >= len(PEOPLE)
    refined = facesets("refine", str(store), str(root / "refined"), "--min-faces", "4", *at)
    assert refined["facesets"] == len(PEOPLE)

    for photo in sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[6:9]:
        shutil.copy(photo, src / "Colin_Powell" / photo.name)
    facesets("embed", str(src), str(store), *embed_at)
    facesets("extend", str(store), str(root / "raw"), "--refine-out", str(root / "refined"), *at)
    manifest = json.loads((root / "refined" / "refine_manifest.json").read_text())
    assert [f["number"] for f in manifest["facesets"]] == [1, 2, 3]
    # The new Powell photos joined the faceset that already held Powell's.
    powell = [
        d
        for d in (root / "refined").glob("faceset_*")
        if any("Colin_Powell_0001" in f.name for f in d.iterdir())
    ]
    assert len(powell) == 1
    assert any("Colin_Powell_0008" in f.name for f in powell[0].iterdir())

    dedup = facesets("dedup", str(store), *at)
    duplicates = json.loads((root / "faces.db.duplicates.json").read_text())
    assert dedup and "copy_q60.jpg" in json.dumps(duplicates)

    # Consolidate with a bar every pair clears: there is something to merge.
    refined = root / "refined"
    merge_all = ["--candidate-similarity", "-1", "--confident-similarity", "-1"]
    before = tree(refined)
    planned = facesets("consolidate", str(refined), str(store), *merge_all, "--dry-run", *at)
    assert planned["dry_run"] and planned["facesets_after"] == 1
    assert [m["target"] for m in planned["merges"]] == ["faceset_001"]
    assert tree(refined) == before  # a dry run changes nothing
    merged = facesets("consolidate", str(refined), str(store), *merge_all, *at)
    assert merged["changed"] and merged["merges"] == planned["merges"]
    after = json.loads((refined / "refine_manifest.json").read_text())
    assert [f["number"] for f in after["facesets"]] == [1]
    assert tree(refined) != before
    undone = facesets("consolidate", str(refined), str(store), "--undo", *at)
    assert undone["undone"] and tree(refined) == before


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder below folder with its content's digest."""
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        )
        for p in sorted(folder.rglob("*"))
    }


def test_a_folder_written_by_another_job_is_refused_and_left_alone(setup):
    root, _, store, service, _ = setup
    out = root / "busy"
    out.mkdir()
    lock_path = out / layout.WRITER_LOCK
    # Another process holds the folder's writer lock, as a running job does.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, filelock; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
            str(lock_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = subprocess.run(
            [
                *FACESETS,
                "cluster",
                str(store),
                str(out),
                "--clustering",
                service.address,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert refused.returncode != 0
        assert "being written by another facesets job" in refused.stderr, refused.stderr
        assert sorted(p.name for p in out.iterdir()) == [layout.WRITER_LOCK]  # nothing written
    finally:
        holder.communicate("", timeout=30)
    done = facesets("cluster", str(store), str(out), "--clustering", service.address)
    assert done["persons"] >= len(PEOPLE)
    assert (out / "manifest.json").exists()


def test_a_job_without_its_output_folder_is_refused(setup):
    """Over the RPC an empty path would mean the service's own working folder."""
    import grpc

    from facesets.v1 import clustering_pb2, clustering_pb2_grpc

    _, _, store, service, _ = setup
    with grpc.insecure_channel(service.address) as channel:
        stub = clustering_pb2_grpc.ClusteringStub(channel)
        for call in (
            lambda: stub.Cluster(clustering_pb2.ClusterRequest(store=str(store), out="")),
            lambda: stub.Refine(clustering_pb2.RefineRequest(store=str(store), out=" ")),
            lambda: stub.Consolidate(clustering_pb2.ConsolidateRequest(store=str(store))),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                list(call())
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "is required" in (refused.value.details() or "")


def test_a_torn_manifest_in_the_output_folder_is_refused_with_one_piece_of_advice(setup):
    """A manifest cut short (a crash of an older writer, a full disk elsewhere): the job names
    it and says once what to do, writes nothing, and runs once it is moved away."""
    root, _, store, service, _ = setup
    out = root / "torn"
    facesets("cluster", str(store), str(out), "--clustering", service.address)
    manifest = out / "manifest.json"
    whole = manifest.read_bytes()
    manifest.write_bytes(whole[:100])
    before = tree(out)
    refused = run_facesets("cluster", str(store), str(out), "--clustering", service.address)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{manifest} is not a readable manifest" in refused.stderr, refused.stderr
    assert refused.stderr.count("move it away") == 1, refused.stderr
    assert tree(out) == before
    manifest.rename(root / "torn-manifest.json")
    done = facesets("cluster", str(store), str(out), "--clustering", service.address)
    assert done["persons"] >= len(PEOPLE)


def test_cluster_places_no_photo_replaced_since_embed(setup, lfw_dir, tmp_path):
    """A photo replaced by another (of another size: another person's) after embed is not put
    in a person's folder: its path counts as changed, as a vanished one is missing."""
    import sqlite3

    root, src, store, service, _ = setup
    photos, copy = tmp_path / "photos", tmp_path / "faces.db"
    shutil.copytree(src, photos)
    with sqlite3.connect(store) as original, sqlite3.connect(copy) as db:
        original.backup(db)
        for table in ("images", "paths"):
            db.execute(f"UPDATE {table} SET path = replace(path, ?, ?)", (str(src), str(photos)))
    replaced = photos / "Colin_Powell" / sorted(p.name for p in (src / "Colin_Powell").iterdir())[0]
    other = sorted((lfw_dir / "George_W_Bush").glob("*.jpg"))
    other = next(p for p in other if p.stat().st_size != replaced.stat().st_size)
    shutil.copy(other, replaced)
    out = tmp_path / "raw"
    summary = facesets("cluster", str(copy), str(out), "--clustering", service.address)
    assert summary["changed_paths"] == 1 and summary["missing_paths"] == 0
    data = json.loads((out / layout.CLUSTER_MANIFEST).read_text())
    assert data["missing_sources"]["changed_paths"] == [str(replaced)]
    placed = [p.name for p in out.rglob("*.jpg")]
    assert placed and layout.flattened_name(replaced) not in placed
    kept = layout.flattened_name(replaced.parent / "Colin_Powell_0002.jpg")
    assert kept in placed


def test_an_output_named_by_a_file_says_to_name_a_folder(setup, tmp_path):
    _, _, store, service, _ = setup
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    done = run_facesets("cluster", str(store), str(taken), "--clustering", service.address)
    assert done.returncode == 1 and f"{taken} is a file, not a folder" in done.stderr
    assert taken.read_text() == "mine"


def test_dedup_judges_no_photo_by_a_file_replaced_since_embed(setup, lfw_dir, tmp_path):
    """Two photos of one person; the second's file is then replaced by the first one's bytes
    (padded to the second's size, so that its size still matches). Judged by what is on disk,
    the second would be reported a copy of the first (and a user would delete a unique photo);
    judged only while its bytes are the photo embedded, it is no duplicate."""
    root, _, _, service, embed_at = setup
    at = ["--clustering", service.address]
    photos = tmp_path / "photos"
    photos.mkdir()
    by_size = sorted((lfw_dir / "Colin_Powell").glob("*.jpg"), key=lambda p: p.stat().st_size)
    small, large = next(
        (a, b)
        for a, b in zip(by_size, by_size[1:], strict=False)
        if b.stat().st_size // 2 < a.stat().st_size < b.stat().st_size
    )
    shutil.copy(small, photos / "first.jpg")
    shutil.copy(large, photos / "second.jpg")
    store = tmp_path / "faces.db"
    facesets("embed", str(photos), str(store), *embed_at)
    loose = ["--face-similarity", "0.3"]  # every pair of his photos is a candidate
    before = facesets("dedup", str(store), *loose, *at)
    report = tmp_path / "faces.db.duplicates.json"
    assert "second.jpg" not in report.read_text(), before
    size = (photos / "second.jpg").stat().st_size
    data = small.read_bytes()
    (photos / "second.jpg").write_bytes(data + b"\0" * (size - len(data)))

    after = facesets("dedup", str(store), *loose, *at)
    assert "second.jpg" not in json.dumps(json.loads(report.read_text())["near"]), after
    assert after["changed_paths"] == 1  # said, in the summary and the report
    changed = json.loads(report.read_text())["missing_sources"]["changed_paths"]
    assert changed == [str(photos / "second.jpg")]
