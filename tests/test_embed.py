"""`facesets embed` end to end: the embedded default, bad files, aliases, incremental re-runs."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from conftest import lfw_people
from images import write_bad_files

from facesets.clustering.store import SCHEMA_VERSION, FaceStore
from services import run_facesets, running_services, service_flags


@pytest.fixture(scope="module")
def photo_tree(lfw_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    people = lfw_people(lfw_dir, people=6, per_person=4)
    for person, photos in people.items():
        (root / person).mkdir()
        for photo in photos:
            shutil.copy(photo, root / person / photo.name)
    first = next(iter(people.values()))[0]
    expected_errors = write_bad_files(root / "bad", first)
    shutil.copy(first, root / "bad" / "same-bytes-other-name.jpg")
    return root, sum(len(p) for p in people.values()), expected_errors


@pytest.fixture(scope="module")
def services(shared_dir, tmp_path_factory):
    """Services for the re-run tests (the first test runs the embedded default)."""
    roots = [tmp_path_factory.getbasetemp(), shared_dir]
    with running_services(tmp_path_factory.mktemp("services"), roots) as started:
        yield service_flags(started, "embed")


def test_embed_stores_faces_errors_and_aliases_then_reruns_without_inference(photo_tree, tmp_path):
    root, good, expected_errors = photo_tree
    store_path = tmp_path / "faces.db"
    first = run_facesets("embed", str(root), str(store_path), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["files"] == good + len(expected_errors) + 1
    assert summary["store"]["images"] == good
    assert summary["store"]["aliases"] == 1
    assert summary["store"]["faces"] >= good
    assert summary["store"]["errors_by_reason"] == {
        reason: 1 for reason in expected_errors.values()
    }
    assert "embedding" in first.stderr  # the progress bar

    store = FaceStore(store_path)
    try:
        images = {image.path: image for image in store.images()}
        for name, reason in expected_errors.items():
            path = str(root / "bad" / name)
            if reason == "ERROR_REASON_UNREADABLE":
                assert [e for e in store.file_errors() if e[0] == path][0][1] == reason
            else:
                assert images[path].error_reason == reason and images[path].error_message
        aliases = [a for image in images.values() for a in image.aliases]
        assert aliases == [str(root / "bad" / "same-bytes-other-name.jpg")]
        table = store.face_table()
        assert table.embedding.shape == (summary["store"]["faces"], 128)
        assert store.meta()["model_pack"] == "facepack-mini"
    finally:
        store.close()

    # A re-run does no inference: pointing it at an inference service that does not exist
    # still succeeds, because nothing is sent there.
    again = run_facesets(
        "embed", str(root), str(store_path), "--json", "--inference", "127.0.0.1:9"
    )
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    decoded_errors = len(expected_errors) - 1  # all but the unreadable link are stored by content
    assert rerun["embedded"] == 0 and rerun["known"] == good + 1 + decoded_errors
    assert rerun["store"] == summary["store"]
    # Nor does the embedded default start an inference service for a re-run with nothing new.
    local = run_facesets("--log-level", "debug", "embed", str(root), str(store_path), "--json")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["embedded"] == 0
    assert "service=clustering" in local.stderr and "service=inference" not in local.stderr


def test_new_folder_embeds_only_what_is_new(photo_tree, lfw_dir, tmp_path, services):
    root, good, _ = photo_tree
    tree = tmp_path / "tree"
    shutil.copytree(root, tree, symlinks=True)
    store_path = tmp_path / "faces.db"
    assert run_facesets("embed", str(tree), str(store_path), *services).returncode == 0
    extra = tree / "new-folder"
    extra.mkdir()
    for photo in sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[:3]:
        shutil.copy(photo, extra / photo.name)
    second = run_facesets("embed", str(tree), str(store_path), "--json", *services)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["embedded"] == 3
    assert summary["store"]["images"] == good + 3
    with sqlite3.connect(store_path) as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == good + 3 + 4
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_unchanged_files_are_not_read_again(photo_tree, lfw_dir, tmp_path, services):
    """A re-run over a big library must not read every photo again: a file whose size and
    modification time are as the store recorded them keeps its digest."""
    root, good, expected_errors = photo_tree
    tree = tmp_path / "tree"
    shutil.copytree(root, tree, symlinks=True)
    store_path = tmp_path / "faces.db"
    first = json.loads(
        run_facesets("embed", str(tree), str(store_path), "--json", *services).stdout
    )
    readable = first["files"] - first["unreadable"]
    assert first["hashed"] == readable

    again = json.loads(
        run_facesets("embed", str(tree), str(store_path), "--json", *services).stdout
    )
    assert again["hashed"] == 0 and again["embedded"] == 0
    assert again["store"] == first["store"]

    # A photo replaced by another one (new size and time): only it is read, and embedded.
    person = next(p for p in sorted(tree.iterdir()) if p.is_dir() and p.name != "bad")
    replaced = sorted(person.glob("*.jpg"))[0]
    replaced.write_bytes(next((lfw_dir / "Tony_Blair").glob("*.jpg")).read_bytes())
    changed = json.loads(
        run_facesets("embed", str(tree), str(store_path), "--json", *services).stdout
    )
    assert changed["hashed"] == 1 and changed["embedded"] == 1

    forced = run_facesets("embed", str(tree), str(store_path), "--json", "--rehash", *services)
    assert json.loads(forced.stdout)["hashed"] == readable


def test_a_store_of_the_first_schema_is_upgraded_in_place(tmp_path):
    path = tmp_path / "faces.db"
    with sqlite3.connect(path) as db:  # the paths table as schema version 1 made it
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute(
            "CREATE TABLE paths "
            "(path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL)"
        )
        db.execute("INSERT INTO paths VALUES ('/photos/a.jpg', 'abc', 10)")
    db.close()
    store = FaceStore(path)
    try:
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        # Kept, and known with no modification time: the next run hashes it once more.
        assert store.path_records(["/photos/a.jpg"]) == {"/photos/a.jpg": ("abc", 10, 0)}
    finally:
        store.close()


def test_store_refuses_embeddings_of_another_model(tmp_path):
    store = FaceStore(tmp_path / "faces.db")
    store.bind_model("facepack-mini", 128)
    with pytest.raises(ValueError, match="512-d"):
        store.bind_model("buffalo_l", 512)
    store.close()


def test_missing_source_folder_is_a_clear_error(tmp_path):
    done = run_facesets("embed", str(tmp_path / "nowhere"), str(tmp_path / "faces.db"))
    assert done.returncode == 1
    assert "is not a folder" in done.stderr
