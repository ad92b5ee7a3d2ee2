"""Child processes a service starts (ffmpeg): they end with the service.

A service told to stop kills the children its jobs still wait on (`stop_all`). A service that
is killed (SIGKILL, the OOM killer) runs no clean-up: on Linux the kernel then kills the child
too, asked through util-linux's `setpriv --pdeathsig KILL`, which execs the command. Not through
a `preexec_fn`: Python code run in the child between fork and exec in a threaded service
crashed there now and then (the cut's ffmpeg exited with SIGSEGV and wrote nothing).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from functools import cache
from typing import Any

_live: set[subprocess.Popen[Any]] = set()
_lock = threading.Lock()
_stopping = threading.Event()


@cache
def _setpriv() -> str | None:
    return shutil.which("setpriv") if sys.platform.startswith("linux") else None


def dying_with_thread(command: Sequence[str]) -> list[str]:
    """`command` run so that the kernel SIGKILLs it when the thread that starts it ends (the
    thread waits for it, so: when the service dies); as it is where setpriv is missing."""
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else list(command)


def popen(command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen, tracked until `forget`, killed by `stop_all`; the starting thread
    waits for the process (the death signal fires when that thread ends)."""
    if _stopping.is_set():
        raise RuntimeError("the service is stopping; no new process is started")
    process: subprocess.Popen[Any] = subprocess.Popen(dying_with_thread(command), **kwargs)
    with _lock:
        _live.add(process)
    return process


def forget(process: subprocess.Popen[Any]) -> None:
    with _lock:
        _live.discard(process)


def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """subprocess.run(..., capture_output=True, text=True), the process tracked while it runs
    (a stop kills it: the caller sees its non-zero exit) and killed by the kernel if the
    service dies first."""
    process = popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
    try:
        out, err = process.communicate()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        forget(process)
    return subprocess.CompletedProcess(list(command), process.returncode, out, err)


def stop_all() -> None:
    """Kill every tracked child (the service is stopping) and start no more."""
    _stopping.set()
    with _lock:
        processes = list(_live)
    for process in processes:
        if process.poll() is None:
            process.kill()
