"""Child processes a service starts (ffmpeg): they end with the service.

A service told to stop kills the children its jobs still wait on (`stop_all`). `popen` can also
ask the kernel to SIGKILL a child when the thread that started it dies (PR_SET_PDEATHSIG); `run`,
which cuts clips, does not (see there).
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1
_live: set[subprocess.Popen[Any]] = set()
_lock = threading.Lock()
_stopping = threading.Event()


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A preexec_fn that asks the kernel to send `sig` to the child when its parent thread
    dies (Linux); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def apply() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return apply


def popen(
    command: Sequence[str], *, die_with_thread: bool = True, **kwargs: Any
) -> subprocess.Popen[Any]:
    """subprocess.Popen, tracked until `forget`, killed by `stop_all`. `die_with_thread`: the
    starting thread waits for the process (PR_SET_PDEATHSIG fires when that thread ends); a
    process handed to other threads passes False (it dies on its closed pipes instead)."""
    if _stopping.is_set():
        raise RuntimeError("the service is stopping; no new process is started")
    process: subprocess.Popen[Any] = subprocess.Popen(
        list(command), preexec_fn=die_with_parent() if die_with_thread else None, **kwargs
    )
    with _lock:
        _live.add(process)
    return process


def forget(process: subprocess.Popen[Any]) -> None:
    with _lock:
        _live.discard(process)


def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """subprocess.run(..., capture_output=True, text=True), the process tracked while it runs
    (a stop kills it: the caller sees its non-zero exit). No death signal is asked of the
    kernel here: with it, the video tests' stream-copied clips failed their frame check after
    an earlier job in the same service (cause not found), so a service killed with SIGKILL
    can leave its last ffmpeg to finish alone."""
    process = popen(
        command,
        die_with_thread=False,
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
