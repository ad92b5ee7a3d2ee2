"""`facesets enrich`: faces lacking pose get it from the inference service; re-runs do nothing."""

from __future__ import annotations

import json
import shutil
import sqlite3

from services import run_facesets, running_services, service_flags


def test_enrich_fills_missing_pose_and_resumes(lfw_dir, shared_dir, tmp_path):
    # The three commands share one pair of services (their start-up is tested elsewhere).
    (tmp_path / "services").mkdir()
    with running_services(tmp_path / "services", [tmp_path, shared_dir]) as started:
        enrich_and_resume(lfw_dir, tmp_path, service_flags(started, "embed"))


def enrich_and_resume(lfw_dir, tmp_path, services):
    src = tmp_path / "photos"
    src.mkdir()
    for photo in sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[:6]:
        shutil.copy(photo, src / photo.name)
    store = tmp_path / "faces.db"
    assert run_facesets("embed", str(src), str(store), *services).returncode == 0
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
