"""A write that found no room, whichever layer meets it (a service's job, the command)."""

from __future__ import annotations

import errno

# No space left, a quota reached, or a file size limit.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(error: OSError) -> bool:
    """Whether `error` is a write that needs room (or one that marks itself `disk_full`, as
    the store's write errors do for SQLite's SQLITE_FULL)."""
    return error.errno in _NO_ROOM or bool(getattr(error, "disk_full", False))
