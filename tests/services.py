"""Real service processes for tests: `facesets serve ...` started and stopped by hand."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The `facesets` command, run by the interpreter that runs the tests.
FACESETS: list[str] = [sys.executable, "-m", "facesets.orchestrator.cli"]


def run_facesets(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FACESETS, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


class ServiceProcess:
    def __init__(self, service: str, port: int, log_path: Path, *extra: str) -> None:
        self.service = service
        self.port = port
        self.log_path = log_path
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(
        self, listen: str | None = None, wait: bool = True, file_size_limit: int | None = None
    ) -> ServiceProcess:
        """`file_size_limit` (bytes, RLIMIT_FSIZE) makes the process's writes past that size
        fail as they do on a full disk."""
        command = [
            *FACESETS,
            "--log-level",
            "debug",
            "serve",
            self.service,
            "--listen",
            listen or self.address,
            *self.extra,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
                preexec_fn=None if file_size_limit is None else _limit_file_size(file_size_limit),
            )
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.service} exited: {self.log_path.read_text()[-2000:]}"
                    )
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"{self.service} not serving on {self.address}")

    def crash_and_restart(self, down_s: float) -> None:
        """kill -9, stay down for down_s, then start again on the same port."""
        self.kill()
        time.sleep(down_s)
        self.start()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
