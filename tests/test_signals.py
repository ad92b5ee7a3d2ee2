"""The command owns its children: SIGTERM, SIGHUP, SIGINT or SIGKILL of `facesets run` and of
`facesets video cut --accurate` leave no local service and no ffmpeg running after 10 s, and no
clip half-written under its final name (a `.part` file is removed). The local services' folders
a command killed with SIGKILL leaves behind are removed by the next command, and no others."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import lfw_people
from videos import ShotSpec, make_video

from services import FACESETS, run_facesets, wait_for

SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL]
LIMIT_S = 10.0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_and_check(process: subprocess.Popen[bytes], sig: int, what: str) -> None:
    """Send `sig` to the command alone, then: it and everything it started end within LIMIT_S."""
    family = descendants(process.pid)
    assert family, f"{what}: the command started nothing"
    os.kill(process.pid, sig)
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline and (process.poll() is None or any(alive(p) for p in family)):
        time.sleep(0.1)
    left = {p: command_line(p) for p in family if alive(p)}
    for pid in left:  # leave nothing behind for the next test, whatever happened
        os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
    process.wait()
    assert not left, f"{what}: still running {LIMIT_S:g}s after {signal.Signals(sig).name}: {left}"


def started(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # Its own session: the signal goes to the command alone, as `kill PID` does.
    return subprocess.Popen(
        [*FACESETS, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )


def services_of(process: subprocess.Popen[bytes]) -> list[int]:
    return [p for p in descendants(process.pid) if " serve " in command_line(p)]


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Path:
    """OUT of `facesets video plan` over a video with long segments to cut."""
    src = tmp_path_factory.mktemp("src")
    faces = sorted((lfw_dir / "Aaron_Peirsol").glob("*.jpg"))
    shots = [ShotSpec(8, (40, 40, 160), faces[i], motion="zoom") for i in range(3)]
    make_video(src / "long.mp4", shots)
    out = tmp_path_factory.mktemp("planned")
    done = run_facesets("video", "plan", str(src), str(out), "--sample-fps", "2", timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_video_cut_accurate_stops_its_services_and_ffmpeg(
    planned: Path, tmp_path: Path, sig: int
) -> None:
    out = tmp_path / "out"
    shutil.copytree(planned, out)
    process = started("video", "cut", str(out), "--accurate")

    def ffmpeg_writing() -> bool:
        return any(out.rglob("*.part.mp4")) and any(
            "ffmpeg" in command_line(p) for p in descendants(process.pid)
        )

    try:
        wait_for(ffmpeg_writing, 300, "ffmpeg writing a clip")
    except TimeoutError:
        process.kill()
        raise
    stop_and_check(process, sig, "video cut --accurate")
    parts = list(out.rglob("*.part*"))
    assert not parts, f"part files left: {parts}"


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_run_stops_its_services(lfw_dir: Path, tmp_path: Path, sig: int) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, photos in lfw_people(lfw_dir, 4, 4).items():
        for photo in photos:
            shutil.copy(photo, src / f"{name}_{photo.name}")
    process = started("run", str(src), str(tmp_path / "out"), "--min-faces", "3")
    try:
        wait_for(lambda: len(services_of(process)) >= 1, 120, "a local service started")
    except TimeoutError:
        process.kill()
        raise
    time.sleep(1.0)  # some work under way
    stop_and_check(process, sig, "run")


def test_the_folders_a_killed_command_leaves_are_removed_by_the_next(
    lfw_dir: Path, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    src = tmp_path / "src"
    src.mkdir()
    for name, photos in lfw_people(lfw_dir, 2, 3).items():
        for photo in photos:
            shutil.copy(photo, src / f"{name}_{photo.name}")
    store = tmp_path / "faces.db"
    process = started("embed", str(src), str(store), env=env)
    try:
        wait_for(lambda: len(services_of(process)) >= 2, 120, "the local services started")
        wait_for(lambda: len(list(temp.glob("facesets-*/ready"))) >= 2, 120, "services ready")
    except TimeoutError:
        process.kill()
        raise
    stop_and_check(process, signal.SIGKILL, "embed")
    left = sorted(temp.glob("facesets-*"))
    assert len(left) >= 2 and all((folder / "service.log").is_file() for folder in left)
    # Folders that are not a gone command's service folder stay: a running command's, one
    # holding a file no service writes, and one named otherwise.
    running = temp / f"facesets-export-{os.getpid()}-running"
    foreign = temp / f"facesets-export-{process.pid}-foreign"
    other = temp / "facesets-notes"
    for folder in (running, foreign, other):
        folder.mkdir()
        (folder / "service.log").write_text("kept")
    (foreign / "notes.txt").write_text("not a service's")
    again = run_facesets("embed", str(src), str(store), env=env)
    assert again.returncode == 0, again.stderr
    assert not any(folder.exists() for folder in left)
    assert sorted(temp.glob("facesets-*")) == sorted([running, foreign, other])


def test_ffmpeg_ends_with_an_export_service_killed_mid_cut(planned: Path, tmp_path: Path) -> None:
    """The export service itself dies (SIGKILL, as the OOM killer does) while its ffmpeg cuts:
    the kernel kills that ffmpeg too. The cut is made slow for the test: `ffmpeg` on the
    command's PATH waits a minute before it runs the real one for a clip (its other uses, the
    version and probes, run at once), so only the death signal ends it within LIMIT_S."""
    out = tmp_path / "out"
    shutil.copytree(planned, out)
    tools = tmp_path / "bin"
    tools.mkdir()
    real = shutil.which("ffmpeg")
    assert real is not None
    slow = tools / "ffmpeg"
    slow.write_text(  # one process from start to end: nothing of it outlives a kill
        f"#!{sys.executable}\nimport os, sys, time\n"
        'if any(a.endswith(".part.mp4") for a in sys.argv): time.sleep(60)\n'
        f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n"
    )
    slow.chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    process = started("video", "cut", str(out), "--accurate", env=env)

    def cutting() -> list[tuple[int, int]]:
        """(export service, its ffmpeg) while one writes a clip."""
        found = []
        for service in services_of(process):
            if " export" not in command_line(service):
                continue
            found += [
                (service, child)
                for child in descendants(service)
                if ".part.mp4" in command_line(child) and alive(child)
            ]
        return found

    try:
        wait_for(lambda: bool(cutting()), 300, "ffmpeg cutting")
        service, ffmpeg = cutting()[0]
        os.kill(service, signal.SIGKILL)
        wait_for(lambda: not alive(ffmpeg), LIMIT_S, "the service's ffmpeg ended")
    finally:
        for pid in descendants(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait()
