"""Kill the inference or the clustering service in the middle of `facesets embed`, start it
again, and the run carries on with nothing lost, duplicated or half-written."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading

import pytest
from conftest import free_port, lfw_people

from services import FACESETS, ServiceProcess, wait_for


def _stored(store_path) -> int:
    try:
        with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    except sqlite3.Error:
        return 0


def _face_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Faces stored per image (sha256), counted in the faces table itself."""
    rows = db.execute(
        "SELECT i.sha256, COUNT(f.face_id) FROM images i "
        "LEFT JOIN faces f ON f.sha256 = i.sha256 GROUP BY i.sha256"
    )
    return dict(rows.fetchall())


def _copy_people(lfw_dir, photos, **chosen: int) -> int:
    """Copies of LFW people's photos, a folder each; how many photos."""
    total = 0
    for person, files in lfw_people(lfw_dir, **chosen).items():
        (photos / person).mkdir(parents=True)
        for photo in files:
            shutil.copy(photo, photos / person / photo.name)
            total += 1
    return total


@pytest.mark.slow
def test_services_restart_mid_run(lfw_dir, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    total = _copy_people(lfw_dir, photos, people=30, per_person=6, min_photos=3)
    # Commits of 16 images: the progress the kills wait for shows within a few seconds, and
    # over 60 images are still to come when the second service is killed.
    monkeypatch.setenv("FACESETS_STORE__COMMIT_BATCH", "16")
    store = tmp_path / "faces.db"
    inference = ServiceProcess("inference", free_port(), tmp_path / "inference.log").start()
    clustering = ServiceProcess("clustering", free_port(), tmp_path / "clustering.log").start()
    flags = ["--json", "--send", "bytes", "--inference", inference.address]
    flags += ["--clustering", clustering.address]
    command = [*FACESETS, "embed", str(photos), str(store), *flags]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _stored(store) >= 40, 120, "no progress before the first kill")
        inference.crash_and_restart(1.0)
        before = _stored(store)
        wait_for(lambda: _stored(store) >= before + 40, 120, "no progress after restart")
        clustering.crash_and_restart(1.0)
        out, err = run.communicate(timeout=300)
        # The same photos through the same (restarted) services, undisturbed: compared below.
        calm_store = tmp_path / "calm.db"
        calm = subprocess.run(
            [*FACESETS, "embed", str(photos), str(calm_store), *flags],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        if run.poll() is None:
            run.kill()
        inference.stop()
        clustering.stop()
    assert run.returncode == 0, err
    summary = json.loads(out)
    assert summary["restarts"] >= 2
    assert summary["store"]["images"] == total
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == total
        # No face stored twice: each image's faces are numbered 0..n-1 exactly once.
        numbered = db.execute(
            "SELECT COUNT(*) FROM (SELECT sha256 FROM faces GROUP BY sha256 "
            "HAVING COUNT(*) != COUNT(DISTINCT face_index) OR MAX(face_index) != COUNT(*) - 1)"
        ).fetchone()[0]
        assert numbered == 0
        disturbed = _face_counts(db)
        # Every image's faces are all there: face_count agrees with the stored faces.
        mismatched = db.execute(
            "SELECT COUNT(*) FROM images i WHERE face_count != "
            "(SELECT COUNT(*) FROM faces f WHERE f.sha256 = i.sha256)"
        ).fetchone()[0]
        assert mismatched == 0
        assert db.execute("SELECT COUNT(*) FROM faces WHERE embedding IS NULL").fetchone()[0] == 0
    # The same faces as a run nobody disturbed.
    assert calm.returncode == 0, calm.stderr
    with sqlite3.connect(calm_store) as db:
        assert disturbed == _face_counts(db)


def test_graceful_shutdown_finishes_or_reports_every_image(lfw_dir, tmp_path):
    import signal

    import grpc

    from facesets.v1 import common_pb2, inference_pb2_grpc

    photos = [p for p in sorted(lfw_dir.glob("A*/*.jpg"))[:150]]
    service = ServiceProcess("inference", free_port(), tmp_path / "inference.log").start()
    channel = grpc.insecure_channel(service.address)
    stub = inference_pb2_grpc.InferenceStub(channel)
    terminated = threading.Event()

    def requests():
        # Five images, then the rest only once the service has been told to stop: however
        # fast the machine, the stop comes while images are still arriving.
        for i, p in enumerate(photos):
            if i == 5:
                terminated.wait(60)
            yield common_pb2.ImageRequest(id=str(p), path=str(p))

    results = []
    try:
        for result in stub.Embed(requests(), timeout=120):
            results.append(result)
            if len(results) == 5:
                service.process.send_signal(signal.SIGTERM)
                wait_for(
                    lambda: "shutting down" in (tmp_path / "inference.log").read_text(),
                    30,
                    "the service did not start shutting down",
                )
                terminated.set()
    finally:
        terminated.set()
        channel.close()
    assert service.process.wait(timeout=30) == 0
    assert sorted(r.id for r in results) == sorted(str(p) for p in photos)
    not_done = [r for r in results if r.error.reason == common_pb2.ERROR_REASON_NOT_DONE]
    finished = [r for r in results if not r.HasField("error")]
    assert len(not_done) + len(finished) == len(photos)
    assert len(finished) >= 5 and not_done
    assert all(str(p) in {r.id for r in not_done} for p in photos[-5:])
    assert "shutting down" in (tmp_path / "inference.log").read_text()


# A small disk and few photos (63), committed 16 at a time: the store's write-ahead log holds
# about 104 KiB once the files are registered, 152 KiB after the first commit and 213 KiB after
# the second, so the disk fills up with 16 photos stored.
FULL_DISK_BYTES = 184 * 1024
FULL_DISK_PEOPLE = 20
FULL_DISK_COMMIT_BATCH = "16"


def test_a_full_disk_stops_embed_clearly_and_a_rerun_finishes(
    lfw_dir, tmp_path, monkeypatch, request
):
    """The store's disk fills up mid-run (the clustering service may not grow a file past
    FULL_DISK_BYTES): embed stops with a message that says what to do, what was committed is intact,
    and once there is room a re-run embeds only the rest."""
    photos = tmp_path / "photos"
    total = _copy_people(lfw_dir, photos, people=FULL_DISK_PEOPLE, per_person=5, min_photos=2)
    store = tmp_path / "faces.db"
    log = tmp_path / "clustering.log"
    monkeypatch.setenv("FACESETS_STORE__COMMIT_BATCH", FULL_DISK_COMMIT_BATCH)
    clustering = ServiceProcess("clustering", free_port(), log)
    # One inference service for both runs: its start-up is not what is tested here.
    inference = ServiceProcess("inference", free_port(), tmp_path / "inference.log").start()
    request.addfinalizer(inference.stop)
    command = [*FACESETS, "embed", str(photos), str(store), "--json"]
    command += ["--clustering", clustering.address, "--inference", inference.address]
    clustering.start(file_size_limit=FULL_DISK_BYTES)
    try:
        full = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        clustering.stop()
    assert full.returncode != 0
    assert f"cannot write the face store {store}" in full.stderr, full.stderr
    assert "run the command again" in full.stderr and "Traceback" not in full.stderr
    assert "resuming" not in full.stderr  # it stops; it does not wait for a restart
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        torn = db.execute(
            "SELECT COUNT(*) FROM images i WHERE face_count != "
            "(SELECT COUNT(*) FROM faces f WHERE f.sha256 = i.sha256)"
        ).fetchone()[0]
    assert 0 < kept < total and torn == 0, (kept, total)

    clustering.start()  # room again
    try:
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        clustering.stop()
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["known"] == kept and summary["embedded"] == total - kept
    assert summary["store"]["images"] == total
