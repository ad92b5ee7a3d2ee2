"""`facesets enrich`: faces lacking pose get it from the inference service; re-runs do nothing;
a photo replaced since embed is left unread."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3

import pytest

from services import run_facesets, running_services, service_flags


@pytest.fixture(scope="module")
def services(shared_dir, tmp_path_factory):
    """One pair of services for the module's commands (their start-up is tested elsewhere)."""
    roots = [tmp_path_factory.getbasetemp(), shared_dir]
    with running_services(tmp_path_factory.mktemp("services"), roots) as started:
        yield service_flags(started, "embed")


def test_enrich_fills_missing_pose_and_resumes(lfw_dir, tmp_path, services):
    enrich_and_resume(lfw_dir, tmp_path, services)


def test_enrich_leaves_the_faces_of_a_photo_replaced_since_embed(lfw_dir, tmp_path, services):
    """A photo replaced by another of the same size (another person's) keeps its faces as they
    were: its landmarks and pose would otherwise land on the stored face its box overlaps.
    Through given services (bytes, read once and checked) and the command's own (paths)."""
    src, store = embedded(lfw_dir, tmp_path, services, 4)
    replaced = sorted(src.glob("*.jpg"))[0]
    digest = hashlib.sha256(replaced.read_bytes()).hexdigest()
    with sqlite3.connect(store) as db:
        db.execute("UPDATE faces SET yaw = NULL, pitch = NULL, roll = NULL, pose_source = 0")
        faces = db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        in_replaced = db.execute("SELECT COUNT(*) FROM faces WHERE sha256 = ?", (digest,))
        in_replaced = in_replaced.fetchone()[0]
    assert in_replaced >= 1 and faces > in_replaced
    # Another person's photo, the same 250x250 as every LFW photo, under the same name.
    shutil.copy(sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[0], replaced)

    by_bytes = run_facesets("enrich", str(store), "--json", *services)
    assert by_bytes.returncode == 0, by_bytes.stderr
    first = json.loads(by_bytes.stdout)
    assert first["images_changed"] == 1 and first["faces_lacking"] == faces
    assert first["faces_updated"] == faces - in_replaced
    assert f"changed {replaced}  (not the photo embedded" in by_bytes.stderr
    assert "run `facesets embed` on their folder again" in by_bytes.stderr

    by_path = run_facesets("enrich", str(store), "--json")  # the command's own services
    assert by_path.returncode == 0, by_path.stderr
    again = json.loads(by_path.stdout)
    assert again["faces_lacking"] == in_replaced and again["images_changed"] == 1
    assert again["faces_updated"] == 0 and f"changed {replaced}" in by_path.stderr
    with sqlite3.connect(store) as db:
        untouched = db.execute(
            "SELECT COUNT(*) FROM faces WHERE sha256 = ? AND yaw IS NULL", (digest,)
        ).fetchone()[0]
        written = db.execute("SELECT COUNT(*) FROM faces WHERE yaw IS NOT NULL").fetchone()[0]
    assert untouched == in_replaced and written == faces - in_replaced


def embedded(lfw_dir, tmp_path, services, photos: int):
    """A folder of Colin Powell's first `photos` photos, embedded into a fresh store."""
    src = tmp_path / "photos"
    src.mkdir()
    for photo in sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[:photos]:
        shutil.copy(photo, src / photo.name)
    store = tmp_path / "faces.db"
    assert run_facesets("embed", str(src), str(store), *services).returncode == 0
    return src, store


def enrich_and_resume(lfw_dir, tmp_path, services):
    _, store = embedded(lfw_dir, tmp_path, services, 6)
    with sqlite3.connect(store) as db:
        original = dict(db.execute("SELECT face_id, yaw FROM faces").fetchall())
        db.execute(
            "UPDATE faces SET yaw = NULL, pitch = NULL, roll = NULL, pose_source = 0 "
            "WHERE face_id % 2 = 1"
        )
        stripped = db.execute("SELECT COUNT(*) FROM faces WHERE yaw IS NULL").fetchone()[0]
    assert stripped >= 3

    done = run_facesets("enrich", str(store), "--json", *services)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["faces_lacking"] == stripped
    assert summary["faces_updated"] == stripped
    with sqlite3.connect(store) as db:
        rows = dict(db.execute("SELECT face_id, yaw FROM faces").fetchall())
        assert db.execute("SELECT COUNT(*) FROM faces WHERE pose_source = 2").fetchone()[0] == len(
            rows
        )
    for face_id, yaw in rows.items():
        assert abs(yaw - original[face_id]) < 1e-3  # the same pose the embed step computed

    again = json.loads(run_facesets("enrich", str(store), "--json", *services).stdout)
    assert again["faces_lacking"] == 0 and again["faces_updated"] == 0
