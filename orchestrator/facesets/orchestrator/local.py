"""The embedded default: services started as child processes on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)
START_TIMEOUT_S = 180.0


class ServiceStartError(RuntimeError):
    pass


class LocalService:
    """`facesets serve NAME` in a child process, listening on 127.0.0.1 at a free port."""

    def __init__(self, name: str, extra_args: list[str] | None = None) -> None:
        self.name = name
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self._folder = tempfile.TemporaryDirectory(prefix=f"facesets-{name}-")
        self.log_path = Path(self._folder.name) / "service.log"

    def start(self) -> str:
        ready = Path(self._folder.name) / "ready"
        command = [
            sys.executable,
            "-m",
            "facesets.orchestrator.cli",
            "serve",
            self.name,
            "--listen",
            "127.0.0.1:0",
            "--ready-file",
            str(ready),
            *self.extra_args,
        ]
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=os.environ.copy(),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if self.process.poll() is not None:
                raise ServiceStartError(
                    f"the {self.name} service exited while starting:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceStartError(f"the {self.name} service did not start in time")
            time.sleep(0.05)
        self.address = ready.read_text().strip()
        log.debug("local service started", service=self.name, address=self.address)
        return self.address

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._folder.cleanup()
