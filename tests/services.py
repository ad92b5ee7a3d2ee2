"""Real service processes for tests: `facesets serve ...` started and stopped by hand."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from conftest import SHARED, free_port

from facesets.orchestrator import local

# The `facesets` command, run by the interpreter that runs the tests.
FACESETS: list[str] = [sys.executable, "-m", "facesets.orchestrator.cli"]


def run_facesets(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FACESETS, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def killed_at(target: str, after: str, run: str) -> str:
    """Python source that runs `run` with `target` (module.function) made to end the process
    at its call number `after` + 1 (an expression: `after` calls go through): exit status 9,
    no clean-up, as when a service is killed half-way through a job."""
    module, function = target.rsplit(".", 1)
    return textwrap.dedent(
        f"""
            import importlib, os, sys
            from pathlib import Path
            patched = importlib.import_module({module!r})
            real, made = getattr(patched, {function!r}), [0]
            def dying(*args, **kwargs):
                if made[0] == {after}:
                    os._exit(9)
                made[0] += 1
                return real(*args, **kwargs)
            setattr(patched, {function!r}, dying)
            """
    ) + textwrap.dedent(run)


def copy_store(source: Path, dest: Path) -> Path:
    """A face store copied as SQLite's backup copies it (as `facesets store backup` does): the
    same store, its id kept, at another path (a run's folder moved, say)."""
    with sqlite3.connect(source) as original, sqlite3.connect(dest) as copy:
        original.backup(copy)
    original.close()
    copy.close()
    return dest


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def _test_folder(log_path: Path) -> Path:
    """The folder of the test run a log lies in: pytest's base temporary folder (which holds
    every tmp_path of the run) when the log is in one, else the log's own folder."""
    for folder in log_path.parents:
        if folder.name.startswith("pytest-") and folder.parent.name.startswith("pytest-of-"):
            return folder
    return log_path.parent


class ServiceProcess:
    """`facesets serve SERVICE` on a fixed loopback port, started the way commands start their
    local services (facesets.orchestrator.local), with crash and full-disk controls.

    The service may use the test run's folder (the one holding `log_path`) and the sample data
    (`--allow-root`), or exactly `roots` when given.
    """

    def __init__(
        self,
        service: str,
        port: int,
        log_path: Path,
        *extra: str,
        roots: Sequence[Path] | None = None,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        """`host`: the address it serves on; `prefix`: a command it runs under (e.g.
        `ip netns exec NS`, to run it in another network namespace)."""
        self.service = service
        self.host = host
        self.prefix = list(prefix)
        self.port = port
        self.log_path = log_path
        self.ready_file = log_path.with_name(f"{log_path.name}.ready")
        allowed = [_test_folder(log_path), SHARED] if roots is None else list(roots)
        self.extra = [*extra, *(a for root in allowed for a in ("--allow-root", str(root)))]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(
        self, listen: str | None = None, wait: bool = True, file_size_limit: int | None = None
    ) -> ServiceProcess:
        """`file_size_limit` (bytes, RLIMIT_FSIZE) makes the process's writes past that size
        fail as they do on a full disk. util-linux's prlimit sets it and execs the service: no
        Python runs in the forked child (this process has threads)."""
        limit = [] if file_size_limit is None else ["prlimit", f"--fsize={file_size_limit}", "--"]
        command = (
            limit
            + self.prefix
            + local.serve_command(
                self.service, listen or self.address, self.ready_file, self.extra, log_level="debug"
            )
        )
        self.process = local.launch(command, self.log_path)
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 120) -> None:
        assert self.process is not None
        try:
            local.wait_ready(self.process, self.ready_file, self.service, self.log_path, timeout)
        except local.ServiceStartError as error:
            raise RuntimeError(str(error)) from error

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
        if self.process is not None:
            local.terminate(self.process, timeout_s=20)


# The services each command talks to when given their addresses (the others it does not take).
COMMAND_SERVICES: dict[str, tuple[str, ...]] = {
    "embed": ("inference", "clustering"),
    "probe": ("clustering",),
    "cluster": ("clustering",),
    "store": ("clustering",),
    "refine": ("clustering",),
    "consolidate": ("clustering",),
    "extend": ("clustering",),
    "merge": ("export",),
    "restore": ("export",),
    "report": ("export",),
    "dedup-optimize": ("export", "inference"),
}
ALL_SERVICES = ("inference", "clustering", "export")
# An export service's peers where no call reaches them (each is refused before it would).
NO_PEERS = ("--clustering", "127.0.0.1:1", "--inference", "127.0.0.1:1")


@contextmanager
def started_service(
    service: str, logs: Path, *extra: str, roots: Sequence[Path] | None = None
) -> Iterator[ServiceProcess]:
    """One service on a free port, serving until the block ends (logs: LOGS/SERVICE.log)."""
    process = ServiceProcess(service, free_port(), logs / f"{service}.log", *extra, roots=roots)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def running_services(logs: Path, roots: Sequence[Path]) -> Iterator[dict[str, ServiceProcess]]:
    """The three services, started at once (the export service calling the other two) and
    stopped at the end: for a module whose commands' own start-up is not what it tests."""
    inference, clustering = (
        ServiceProcess(name, free_port(), logs / f"{name}.log", roots=roots)
        for name in ("inference", "clustering")
    )
    export = ServiceProcess(
        "export", free_port(), logs / "export.log",
        "--clustering", clustering.address, "--inference", inference.address, roots=roots,
    )  # fmt: skip
    started = {"inference": inference, "clustering": clustering, "export": export}
    try:
        for service in started.values():
            service.start(wait=False)
        for service in started.values():
            service.wait_serving()
        yield started
    finally:
        for service in started.values():
            service.stop()


def service_flags(services: dict[str, ServiceProcess], *command: str) -> list[str]:
    """`--inference=HOST:PORT ...` for the services `command` (its words, e.g. "age", "probe")
    talks to."""
    wanted = next((COMMAND_SERVICES[w] for w in command if w in COMMAND_SERVICES), ALL_SERVICES)
    return [f"--{name}={services[name].address}" for name in wanted]
