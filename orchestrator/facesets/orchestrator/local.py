"""The embedded default: services started as child processes on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

import structlog

from facesets.orchestrator.settings import SETTINGS
from facesets.shared.processes import running

log = structlog.get_logger(__name__)
START_TIMEOUT_S = 180.0


class ServiceStartError(RuntimeError):
    pass


def serve_command(
    name: str, listen: str, ready_file: Path, extra: Sequence[str] = (), *, log_level: str = ""
) -> list[str]:
    """`facesets serve NAME` run by this interpreter; the service writes its bound address to
    `ready_file` once it serves, and stops when the process that started it is gone."""
    return [
        sys.executable,
        "-m",
        "facesets.orchestrator.cli",
        *(("--log-level", log_level) if log_level else ()),
        "serve",
        name,
        "--listen",
        listen,
        "--ready-file",
        str(ready_file),
        "--exit-with-parent",
        str(os.getpid()),
        "--no-config",
        *extra,
    ]


def launch(command: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """A service process with its output appended to `log_path` (the ready file named in the
    command is removed first, so that a stale one is never taken for this start)."""
    ready = Path(command[command.index("--ready-file") + 1])
    ready.unlink(missing_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            list(command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=os.environ.copy(),
        )


def wait_ready(
    process: subprocess.Popen[bytes],
    ready_file: Path,
    name: str,
    log_path: Path,
    timeout_s: float = START_TIMEOUT_S,
    stopping: threading.Event | None = None,
) -> str:
    """The address a launched service serves on, once it says so; ServiceStartError when it
    exits first, or does not start in time (it is then stopped)."""
    deadline = time.monotonic() + timeout_s
    while not ready_file.exists():
        if process.poll() is not None:
            raise ServiceStartError(
                f"the {name} service exited while starting:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline or (stopping is not None and stopping.is_set()):
            terminate(process)
            raise ServiceStartError(f"the {name} service did not start in time")
        time.sleep(0.05)
    return ready_file.read_text().strip()


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM (the service drains and stops), then SIGKILL after `timeout_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# A local service's folder: its log and ready file, named after the service and the command's
# pid so that a later command can tell the folders of one that is gone.
_FOLDER_FILES = {"service.log", "ready"}
_FOLDER_NAME = re.compile(r"facesets-(?:inference|clustering|export)-(\d+)-[A-Za-z0-9_]+")
_swept = False


def sweep_stale_folders(parent: Path | None = None) -> list[Path]:
    """Remove the local services' folders of commands that are gone: a command killed with
    SIGKILL runs no clean-up. Only this user's folders, named as this module names them, whose
    command's pid no longer runs, holding nothing but a service's log and ready file (plain
    files); anything else is left alone. Returns the folders removed."""
    removed = []
    uid = os.getuid()
    for entry in Path(parent or tempfile.gettempdir()).glob("facesets-*"):
        match = _FOLDER_NAME.fullmatch(entry.name)
        try:
            if match is None or running(int(match.group(1))):
                continue
            info = entry.lstat()
            if not entry.is_dir() or entry.is_symlink() or info.st_uid != uid:
                continue
            contents = list(entry.iterdir())
            if any(
                item.name not in _FOLDER_FILES or item.is_symlink() or not item.is_file()
                for item in contents
            ):
                continue
            for item in contents:
                item.unlink()
            entry.rmdir()
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        removed.append(entry)
    if removed:
        log.info("removed the folders of local services left by commands gone", count=len(removed))
    return removed


# The local services of this command, for halt_all().
_SERVICES: weakref.WeakSet[LocalService] = weakref.WeakSet()


def halt_all() -> None:
    """Tell every local service of this command to stop, without waiting: the command got a
    signal. Runs in the signal handler, so that the services stop even when the command's own
    unwinding hangs (a gRPC call or channel interrupted at an unlucky point can block it)."""
    for service in list(_SERVICES):
        service.halt()


class LocalService:
    """`facesets serve NAME` in a child process, listening on 127.0.0.1 at a free port.

    A child that exits unasked (a crash, the OOM killer) is started again on the same port, so
    the clients' retries find it there; at most SETTINGS.local_service_restarts times.
    """

    def __init__(self, name: str, extra_args: list[str] | None = None) -> None:
        self.name = name
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.restarts = 0
        global _swept
        if not _swept:
            _swept = True
            sweep_stale_folders()
        self._folder = tempfile.TemporaryDirectory(prefix=f"facesets-{name}-{os.getpid()}-")
        self.log_path = Path(self._folder.name) / "service.log"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # Set by halt() from a signal handler, which takes no lock (the interrupted thread may
        # hold it); a plain flag the watcher reads.
        self._halted = False
        _SERVICES.add(self)

    def start(self) -> str:
        self.address = self._launch("127.0.0.1:0")
        log.debug("local service started", service=self.name, address=self.address)
        threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True).start()
        return self.address

    def _launch(self, listen: str) -> str:
        ready = Path(self._folder.name) / "ready"
        process = launch(serve_command(self.name, listen, ready, self.extra_args), self.log_path)
        with self._lock:
            self.process = process
        return wait_ready(process, ready, self.name, self.log_path, stopping=self._stopping)

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                process = self.process
            code = process.poll() if process else None
            if code is None or self._stopping.is_set() or self._halted:
                continue
            if self.restarts >= SETTINGS.local_service_restarts:
                log.error(
                    "local service exited; not starting it again",
                    service=self.name,
                    exit_code=code,
                    restarts=self.restarts,
                    log=self._log_tail(10),
                )
                return
            self.restarts += 1
            log.warning(
                "local service exited; starting it again",
                service=self.name,
                exit_code=code,
                restart=self.restarts,
            )
            try:
                self._launch(self.address)
            except ServiceStartError as error:
                if not self._stopping.is_set():
                    log.error("local service could not be started again", error=str(error))
                return

    def _log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def halt(self) -> None:
        """SIGTERM to the service, not started again and not waited for (see halt_all)."""
        self._halted = True
        process = self.process
        if process is not None:
            with contextlib.suppress(OSError):  # nothing is sent once it was reaped
                process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None:
            terminate(process)
        self._folder.cleanup()
