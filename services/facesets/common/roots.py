"""The folders a service may read and write (`facesets serve --allow-root DIR`).

Every path a client names is checked here before the service touches it: it must be absolute,
and once resolved (symlinks included) it must lie inside one of the roots. A service started
without any --allow-root reads and writes no client-named file at all: safe by default; the
commands that start their own services pass the folders they work on.

Images are opened without blocking and read only when they are regular files, so a FIFO or a
device named as an image is refused instead of holding a worker. Where an opened image really
lies is checked once more on the open descriptor, so a folder swapped for a symlink between the
check and the open cannot hand out a file outside the roots.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from facesets.client.files import opened_path

FLAG = "--allow-root"


class PathRefused(Exception):
    """A client-named path the service will not touch; the message says why."""


class RelativePathError(PathRefused, ValueError):
    """A relative path: it would resolve against the service's working directory."""


class OutsideRootsError(PathRefused, PermissionError):
    """A path outside every root the service was started with."""


class NotRegularFileError(PathRefused, OSError):
    """A FIFO, device, socket or folder named where a file is read."""


class Roots:
    """Resolved root folders; `check_read` / `check_write` return the resolved path."""

    def __init__(self, roots: Iterable[str | Path] = ()) -> None:
        self.roots: tuple[Path, ...] = tuple(
            sorted({Path(os.path.realpath(os.path.abspath(os.fspath(r)))) for r in roots})
        )

    def __repr__(self) -> str:
        return f"Roots({[str(r) for r in self.roots]})"

    def describe(self) -> str:
        return ", ".join(str(r) for r in self.roots) or "none"

    def contains(self, resolved: Path) -> bool:
        return any(resolved == root or root in resolved.parents for root in self.roots)

    def check(self, path: str | Path, field: str = "path") -> Path:
        text = os.fspath(path)
        if not text.strip():
            raise RelativePathError(f"{field} is empty")
        if "\x00" in text:
            raise RelativePathError(f"{field} holds a NUL character")
        if not os.path.isabs(text):
            raise RelativePathError(
                f"{field} {text!r} is relative; requests name absolute paths (a relative one "
                "would resolve against the service's working directory)"
            )
        resolved = Path(os.path.realpath(text))
        if not self.contains(resolved):
            raise self._outside(field, text)
        return resolved

    def _outside(self, field: str, text: str) -> OutsideRootsError:
        allowed = (
            f"the roots it may use are {self.describe()}"
            if self.roots
            else "it was started without any root, so it uses no files"
        )
        return OutsideRootsError(
            f"permission denied: {field} {text} is outside the folders this service may use "
            f"({allowed}); start the service with {FLAG} DIR to allow one"
        )

    def check_read(self, path: str | Path, field: str = "path") -> Path:
        return self.check(path, field)

    def check_write(self, path: str | Path, field: str = "path") -> Path:
        return self.check(path, field)

    def open_regular(self, path: str | Path, field: str = "path") -> BinaryIO:
        """The file opened for reading, once checked; only a regular file is opened, and a FIFO
        swapped in after the check cannot block (O_NONBLOCK, then fstat).

        The check resolves the path before the open does, so a folder swapped for a symlink
        between the two would open a file outside the roots. The opened descriptor is checked
        again: where it really lies (/proc/self/fd) must be inside a root, else the file is
        closed unread and the answer is the same refusal as for a path outside."""
        text = os.fspath(path)
        resolved = self.check_read(path, field)
        handle = open_regular(resolved, display=text)
        try:
            opened = opened_path(handle.fileno(), text)
            if opened is None or not self.contains(Path(opened)):
                raise self._outside(field, text)
        except BaseException:
            handle.close()
            raise
        return handle


def open_regular(path: Path, display: str | None = None) -> BinaryIO:
    """`path` opened for reading if it is a regular file; NotRegularFileError otherwise."""
    shown = display or str(path)
    info = os.stat(path)  # a stat never opens, so never blocks on a FIFO
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(f"{shown} is not a regular file; only regular files are read")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{shown} is not a regular file; only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
