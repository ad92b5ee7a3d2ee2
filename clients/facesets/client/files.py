"""Reading a photo file named by a caller: regular files only, never a blocking open, and,
when a folder is given, only a file that really lies inside it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotRegularFile(OSError):
    """The path is a folder, FIFO, socket or device (directly or through a link)."""


class OutsideFolder(PermissionError):
    """The path leads out of the folder it was found in (through a link)."""

    def __init__(self, path: str, folder: str) -> None:
        super().__init__(
            f"{path} leads out of {folder} through a link; links out of the folder are not followed"
        )
        self.strerror = "a link out of the folder (not followed)"


def inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether `path`, links resolved, lies inside `folder` (links resolved too)."""
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def is_utf8(text: str) -> bool:
    """Whether a path or name is valid UTF-8: the services' messages, the stores and the
    manifests carry paths as UTF-8 text, so a name in another encoding (Latin-1 from an old
    disk or a zip) can be neither sent nor stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def opened_path(fd: int, path: str) -> str | None:
    """Where the file open on `fd` really lies, as the kernel resolved it at open time
    (/proc/self/fd): a folder swapped for a link between a check and the open shows here.
    None when it cannot be told (a file deleted since). Without /proc the path is resolved
    again and must still name the opened file, which narrows the window to two swaps."""
    if os.path.isdir("/proc/self/fd"):
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        return where if where.startswith("/") and not where.endswith(" (deleted)") else None
    again = os.path.realpath(path)
    try:
        named, opened = os.stat(again), os.fstat(fd)
    except OSError:
        return None
    return again if (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino) else None


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words ("a FIFO (named pipe)", "a regular file")."""
    return next((name for test, name in _KINDS if test(mode)), "a regular file")


def _refuse(path: str, mode: int) -> NotRegularFile:
    return NotRegularFile(f"{path} is {kind_of(mode)}, not a regular file")


def open_regular(
    path: str | os.PathLike[str], within: str | os.PathLike[str] | None = None
) -> BinaryIO:
    """`path` opened for reading if it is a regular file (a link to one is followed); else
    NotRegularFile, an OSError. A FIFO cannot block the open (O_NONBLOCK), and one swapped in
    after the first look is caught by fstat on what was opened. With `within`, a file that
    does not lie inside that folder once opened (a link out of it) is closed unread:
    OutsideFolder, an OSError too."""
    shown = os.fspath(path)
    info = os.stat(path)  # a stat never opens, so never blocks
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(shown, info.st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(shown, mode)
        if within is not None:
            where = opened_path(fd, shown)
            if where is None or not inside(where, within):
                raise OutsideFolder(shown, os.fspath(within))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def regular_size(path: str | os.PathLike[str]) -> int:
    """The size of a regular file; NotRegularFile (an OSError) for anything else."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(os.fspath(path), info.st_mode)
    return info.st_size


@dataclass(frozen=True)
class FileStamp:
    """A file's size and modification time when it was hashed: a file that no longer has
    both is not the one hashed (as git and rsync judge a file)."""

    size: int
    mtime_ns: int

    def matches(self, fd: int) -> bool:
        info = os.fstat(fd)
        return (info.st_size, info.st_mtime_ns) == (self.size, self.mtime_ns)
