"""Long jobs behind streaming RPCs: progress events while they run, then their outcome."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import structlog

from facesets.common.error_policy import disk_full_message
from facesets.common.progress import ProgressFn
from facesets.common.roots import OutsideRootsError, PathRefused, Roots
from facesets.shared.disk import is_disk_full
from facesets.v1 import common_pb2

log = structlog.get_logger(__name__)


EVENTS_PER_SECOND = 10


class OutputAmongPhotos(ValueError):
    """A job's output folder holds photos of its store (the photo folder itself, or one above
    it): the next embed of that folder would take the job's linked photos and crops for new
    photos. Refused before the folder's lock file is made there."""

    def __init__(self, folder: Path, photo: str) -> None:
        super().__init__(
            f"{folder} holds photos this store embedded (such as {photo}); a job never writes "
            "its output among them, where the next embed of that folder would take its linked "
            "photos and crops for new photos. Name an output folder that holds none of them"
        )


_running: set[threading.Thread] = set()  # job threads, until their job returns or raises
_running_lock = threading.Lock()


def wait_for_jobs(timeout_s: float) -> int:
    """Wait up to `timeout_s` for the job threads still running (at a stop, once the processes
    they started are killed: a job whose caller went away is no call the server waits for,
    and it still removes its part files); how many were still running at the end."""
    deadline = time.monotonic() + timeout_s
    with _running_lock:
        threads = list(_running)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(thread.is_alive() for thread in threads)


def job_events(run: Callable[[ProgressFn], Any]) -> Iterator[common_pb2.JobEvent]:
    """Run a job in a thread, streaming its progress and then its outcome.

    The job returns a summary dict, or an object with `summary` and `manifest_path`. An
    exception it raises is raised here, in the caller's thread.
    """
    events: queue.Queue = queue.Queue()
    value: Any = None  # what the job returned: a summary dict, or an outcome (see above)
    failure: BaseException | None = None  # what it raised
    last_at, last_stage = 0.0, ""

    def progress(stage: str, done: int, total: int, message: str = "") -> None:
        # Throttled per stage; a stage's first and last events always go out.
        nonlocal last_at, last_stage
        now = time.monotonic()
        if stage == last_stage and done < total and now - last_at < 1 / EVENTS_PER_SECOND:
            return
        last_at, last_stage = now, stage
        events.put(
            common_pb2.JobEvent(progress=common_pb2.Progress(stage=stage, done=done, total=total))
        )

    def worker() -> None:
        nonlocal value, failure
        try:
            value = run(progress)
        except BaseException as error:  # re-raised in the caller's thread below
            failure = error
        finally:
            with _running_lock:
                _running.discard(thread)
            events.put(None)

    thread = threading.Thread(target=worker, daemon=True, name="job")
    with _running_lock:
        _running.add(thread)
    thread.start()
    while (event := events.get()) is not None:
        yield event
    if failure is not None:
        raise failure
    summary = value if isinstance(value, dict) else value.summary
    manifest = None if isinstance(value, dict) else value.manifest_path
    yield common_pb2.JobEvent(
        done=common_pb2.JobDone(
            summary_json=json.dumps(summary, sort_keys=True, default=str),
            manifest_path=str(manifest or ""),
        )
    )


def abort_on_os_error(context: grpc.ServicerContext, error: OSError) -> None:
    """End a call that failed on the file system with a status that says what happened:
    RESOURCE_EXHAUSTED for a full disk, FAILED_PRECONDITION for the rest."""
    log.error("file system error", error=str(error))
    if is_disk_full(error):
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, disk_full_message(error))
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))


def allowed_path(context: grpc.ServicerContext, roots: Roots, value: str, field: str) -> Path:
    """`value` resolved, once the roots allow it: PERMISSION_DENIED outside them,
    INVALID_ARGUMENT for a relative path; both name the path and the flag."""
    try:
        return roots.check(value, field)
    except OutsideRootsError as error:
        log.warning("path refused", field=field, path=value)
        context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
    except PathRefused as error:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    raise AssertionError("abort raises")  # for the type checker: abort never returns
