"""A service killed in the middle of a job: the command runs the job again once the service is
back (every job is idempotent), and the outcome is what an undisturbed run gives. In the
embedded default the command itself starts the dead service again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

from facesets.client import defaults
from facesets.clustering.store import FaceData, FaceStore, ImageData
from facesets.contract import layout
from services import FACESETS, ServiceProcess, wait_for

FACES = 10_000  # a job that runs for a while; the test freezes it mid-way whatever its speed


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FACES one-face photos (tiny files: the job links them, never decodes them) whose
    embeddings fall around FACES / 20 identities."""
    root = tmp_path_factory.mktemp("big")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(FACES // 20, 128)).astype(np.float32)
    store = FaceStore(root / "faces.db")
    store.bind_model("facepack-mini", 128)
    batch: list[ImageData] = []
    for i in range(FACES):
        embedding = centres[i % len(centres)] + rng.normal(scale=0.35, size=128)
        embedding = (embedding / np.linalg.norm(embedding)).astype(np.float32)
        content = f"photo {i}".encode()
        photo = photos / f"photo_{i:05d}.jpg"
        photo.write_bytes(content)
        face = FaceData(
            bbox=(10, 10, 150, 170),
            kps=np.zeros((5, 2), np.float32),
            det_score=0.9,
            embedding=embedding,
            face_short=140.0,
            blur=200.0,
        )
        batch.append(
            ImageData(
                sha256=hashlib.sha256(content).hexdigest(),
                path=str(photo),
                size=len(content),
                width=250,
                height=250,
                faces=[face],
            )
        )
        if len(batch) == 5000:
            store.add_images(batch)
            batch = []
    store.add_images(batch)
    store.close()
    return root / "faces.db"


def cluster_command(store: Path, out: Path, *extra: str) -> list[str]:
    return [
        *FACESETS,
        "cluster",
        str(store),
        str(out),
        "--json",
        *extra,
    ]


def outcome(out: Path) -> tuple[set[str], dict]:
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    return files, json.loads((out / layout.CLUSTER_MANIFEST).read_text())


@pytest.fixture(scope="module")
def undisturbed(big_store: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("clean") / "out"
    done = subprocess.run(
        cluster_command(big_store, out), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return outcome(out)


def freeze_mid_job(pid: int, out: Path) -> None:
    """Stop (SIGSTOP) the service process as soon as the job holds its folder's lock, then
    check that the job is caught mid-way: lock held, manifest not yet written. A stopped
    process cannot finish its job, so the kill that follows lands in it on any machine."""
    lock = out / layout.WRITER_LOCK
    deadline = time.monotonic() + 120
    while not lock.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the job did not start")
        time.sleep(0.001)
    os.kill(pid, signal.SIGSTOP)
    assert lock.exists() and not (out / layout.CLUSTER_MANIFEST).exists(), "job already done"


def test_a_job_runs_again_when_its_service_is_restarted(big_store, undisturbed, tmp_path):
    out = tmp_path / "out"
    service = ServiceProcess(
        "clustering", free_port(), tmp_path / "clustering.log", roots=[tmp_path, big_store.parent]
    ).start()
    run = subprocess.Popen(
        cluster_command(big_store, out, "--clustering", service.address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The job holds its folder's lock from its first step to its last.
        assert service.process is not None
        freeze_mid_job(service.process.pid, out)
        service.crash_and_restart(0.5)
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
        service.stop()
    assert run.returncode == 0, stderr
    assert "running the job again" in stderr
    assert outcome(out) == undisturbed


def _children(parent: int, name: str) -> list[int]:
    """Processes whose parent is `parent` and whose command line runs `serve NAME`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"serve" in argv and name.encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child service through /proc")
def test_the_embedded_default_starts_a_dead_service_again(big_store, undisturbed, tmp_path):
    out = tmp_path / "out"
    run = subprocess.Popen(
        cluster_command(big_store, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: _children(run.pid, "clustering"), 120, "no local service started")
        children = _children(run.pid, "clustering")
        assert len(children) == 1
        freeze_mid_job(children[0], out)
        os.kill(children[0], signal.SIGKILL)  # as the OOM killer would
        wait_for(
            lambda: set(_children(run.pid, "clustering")) - set(children),
            120,
            "the service was not started again",
        )
        (restarted,) = set(_children(run.pid, "clustering")) - set(children)
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    assert "local service exited; starting it again" in stderr
    assert "running the job again" in stderr
    assert outcome(out) == undisturbed
    # The restarted service was stopped with the command, as the first one would have been.
    wait_for(lambda: not Path(f"/proc/{restarted}").exists(), 30, "the service outlived the run")


def test_a_job_that_takes_its_service_down_every_time_ends_with_a_clear_error() -> None:
    """The service comes back each time (health says SERVING) but the job never finishes:
    after defaults.JOB_RERUNS reruns the command stops instead of looping."""
    import grpc

    from facesets.client import ClusteringClient, Endpoint, ServiceUnavailableError
    from facesets.clustering.servicer import ClusteringServicer, register
    from facesets.common.server import ServeOptions, start_server
    from facesets.contract.clustering import ClusterRequest

    calls = []

    class GoesAway(ClusteringServicer):
        def Cluster(self, request, context):  # noqa: N802 (gRPC's method name)
            calls.append(request.out)
            context.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed")

    running = start_server(
        ServeOptions("127.0.0.1:0"), register(GoesAway()), ["facesets.v1.Clustering"]
    )
    client = ClusteringClient(Endpoint(running.address))
    try:
        request = ClusterRequest(Path("s.db"), Path("out"))
        times = defaults.JOB_RERUNS + 1
        with pytest.raises(ServiceUnavailableError, match=f"went away {times} times during"):
            list(client.run(request))
    finally:
        client.close()
        running.stop(grace=0)
    assert len(calls) == defaults.JOB_RERUNS + 1
