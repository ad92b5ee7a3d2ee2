"""Reading a photo file named by a caller: regular files only, and never a blocking open."""

from __future__ import annotations

import os
import stat
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


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words ("a FIFO (named pipe)", "a regular file")."""
    return next((name for test, name in _KINDS if test(mode)), "a regular file")


def _refuse(path: str, mode: int) -> NotRegularFile:
    return NotRegularFile(f"{path} is {kind_of(mode)}, not a regular file")


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """`path` opened for reading if it is a regular file (a link to one is followed); else
    NotRegularFile, an OSError. A FIFO cannot block the open (O_NONBLOCK), and one swapped in
    after the first look is caught by fstat on what was opened."""
    shown = os.fspath(path)
    info = os.stat(path)  # a stat never opens, so never blocks
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(shown, info.st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(shown, mode)
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
