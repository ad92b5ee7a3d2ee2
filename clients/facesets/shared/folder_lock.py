"""One writer per output folder: two jobs writing the same folder would interleave their
files and manifests, so the second one is refused with a clear error instead."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from facesets.contract import layout

T = TypeVar("T")


class FolderBusyError(ValueError):
    """Another job is writing the folder."""


def run_locked(folders: Iterable[Path], job: Callable[[], T], create: bool = True) -> T:
    """Run `job` holding each folder's writer lock (an OS file lock: released when the
    process ends, however it ends).

    Without `create`, a folder that does not exist is not made: the job reports it.
    """
    with ExitStack() as held:
        for folder in sorted({Path(f).resolve() for f in folders}):
            if create:
                if folder.exists() and not folder.is_dir():
                    raise NotADirectoryError(
                        f"{folder} is a file, not a folder; name a folder for the output (it "
                        "is created if missing)"
                    )
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except PermissionError:
                    raise PermissionError(
                        f"cannot create the output folder {folder} (no permission for this user "
                        "to write in the folder above it); name a folder this user may write"
                    ) from None
            elif not folder.is_dir():
                continue
            lock = FileLock(folder / layout.WRITER_LOCK, timeout=0)
            try:
                held.enter_context(lock)
            except PermissionError:
                raise PermissionError(
                    f"cannot write in {folder} (no permission for this user): the job writes "
                    f"there, its lock file ({layout.WRITER_LOCK}) first. Give this user write "
                    "access to the folder, or work on a copy",
                ) from None
            except Timeout:
                raise FolderBusyError(
                    f"{folder} is being written by another facesets job; "
                    "run this again when that job has finished"
                ) from None
        return job()
