"""roop-unleashed faceset files (.fsz): a zip of PNG files at its top level, nothing else.

Written deterministically so the same crops give the same bytes on every run: members in the
order given, fixed timestamps and permissions, stored (PNG is already compressed), no
directory entries, no comment; written to a temporary file and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from facesets.contract import layout

FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # earliest date a zip can hold
FILE_MODE = 0o100644  # regular file, rw-r--r--
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FszError(ValueError):
    """Members that cannot make a valid faceset file."""


def _check(members: Sequence[tuple[str, bytes]]) -> None:
    if not members:
        raise FszError("a faceset file needs at least one image")
    seen: set[str] = set()
    for name, data in members:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise FszError(f"member name must be a plain file name: {name!r}")
        if not name.lower().endswith(".png"):
            raise FszError(f"member is not a .png: {name!r}")
        if name in seen:
            raise FszError(f"member name appears twice: {name!r}")
        if not data.startswith(PNG_SIGNATURE):
            raise FszError(f"member holds no PNG data: {name!r}")
        seen.add(name)


def member_name(rank: int, data: bytes) -> str:
    """A neutral member name: the PNG's place in the bundle and a short hash of its bytes.
    A bundle is shared; the source photo's path (folder names, people's names) stays in the
    faceset manifest, never in the file."""
    return f"{rank:04d}_{hashlib.sha256(data).hexdigest()[:10]}.png"


def fsz_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    """The bytes of a faceset file holding `members` ((file name, PNG bytes), in order)."""
    _check(members)
    buffer = io.BytesIO()
    _write_zip(buffer, members)
    return buffer.getvalue()


def _write_zip(handle: BinaryIO, members: Sequence[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix, so the mode below is honoured everywhere
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, data)


def write_fsz(path: Path, members: Sequence[tuple[str, bytes]]) -> None:
    """Write `members` ((file name, PNG bytes), in order) as a faceset file at `path`."""
    _check(members)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            _write_zip(handle, members)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, layout.file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsz_names(path: Path) -> list[str]:
    """Member names of a faceset file, in stored order."""
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()
