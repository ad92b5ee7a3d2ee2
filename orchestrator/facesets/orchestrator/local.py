"""The embedded default: services started as child processes on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import structlog

from facesets.common import settings

log = structlog.get_logger(__name__)
START_TIMEOUT_S = 180.0


class ServiceStartError(RuntimeError):
    pass


class LocalService:
    """`facesets serve NAME` in a child process, listening on 127.0.0.1 at a free port.

    A child that exits unasked (a crash, the OOM killer) is started again on the same port, so
    the clients' retries find it there; at most settings.LOCAL_SERVICE_RESTARTS times.
    """

    def __init__(self, name: str, extra_args: list[str] | None = None) -> None:
        self.name = name
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.restarts = 0
        self._folder = tempfile.TemporaryDirectory(prefix=f"facesets-{name}-")
        self.log_path = Path(self._folder.name) / "service.log"
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> str:
        self.address = self._launch("127.0.0.1:0")
        log.debug("local service started", service=self.name, address=self.address)
        threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True).start()
        return self.address

    def _launch(self, listen: str) -> str:
        ready = Path(self._folder.name) / "ready"
        ready.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "facesets.orchestrator.cli",
            "serve",
            self.name,
            "--listen",
            listen,
            "--ready-file",
            str(ready),
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log_file:
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=os.environ.copy(),
            )
        with self._lock:
            self.process = process
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if process.poll() is not None:
                raise ServiceStartError(
                    f"the {self.name} service exited while starting:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline or self._stopping.is_set():
                self._terminate(process)
                raise ServiceStartError(f"the {self.name} service did not start in time")
            time.sleep(0.05)
        return ready.read_text().strip()

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                process = self.process
            code = process.poll() if process else None
            if code is None or self._stopping.is_set():
                continue
            if self.restarts >= settings.LOCAL_SERVICE_RESTARTS:
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
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None:
            self._terminate(process)
        self._folder.cleanup()
