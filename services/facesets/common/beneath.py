"""File access beneath one folder, trusting nothing found on disk.

Request paths are checked against the service's roots (`roots.Roots`); this module confines
what the service then reads from the folder itself: paths in manifests, faceset `dir` entries,
files found while walking. Each path is relative (no `..`, nothing absolute) and is resolved
one component at a time from a directory file descriptor with O_NOFOLLOW, so a symbolic link
anywhere below the root is refused when it is used, with no window between a check and the
use (the stdlib has no openat2; `os.open(dir_fd=..., O_NOFOLLOW)` per component does the same).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from facesets.client.files import is_utf8
from facesets.common.roots import PathRefused

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class UnsafePathError(PathRefused, ValueError):
    """A path read from disk that would leave the folder (absolute, `..`, a NUL)."""


class SymlinkRefusedError(UnsafePathError):
    """A symbolic link (or something else than a folder) where a folder of the export lies."""


class NotRegularError(UnsafePathError):
    """A FIFO, device, socket or folder where a regular file is read."""


def parts_of(rel: object, what: str = "path") -> tuple[str, ...]:
    """The components of a relative path taken from a file; UnsafePathError when it is not a
    plain relative path (absolute, `..`, `.`, empty parts, a NUL or a backslash)."""
    if not isinstance(rel, str) or not rel:
        raise UnsafePathError(f"{what} {rel!r} is not a relative path")
    parts = tuple(rel.split("/"))
    if (
        rel.startswith("/")
        or os.path.isabs(rel)
        or "\x00" in rel
        or "\\" in rel
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise UnsafePathError(
            f"{what} {rel!r} does not name a path inside the folder (absolute, '..' or empty "
            "parts); it was read from a file anyone who can write the folder may edit, so it "
            "is refused"
        )
    return parts


def relative(rel: object, what: str = "path") -> str:
    """`rel` when it is a plain relative path (see `parts_of`)."""
    return "/".join(parts_of(rel, what))


def is_relative(rel: object) -> bool:
    try:
        parts_of(rel)
    except UnsafePathError:
        return False
    return True


class Beneath:
    """One folder (already checked against the roots) and every access below it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Beneath({str(self.root)!r})"

    def path(self, rel: str) -> Path:
        """The path of `rel` for messages and for callers that only display it."""
        return self.root / relative(rel)

    # --- folders ------------------------------------------------------------------------------
    def _symlink(self, shown: str) -> SymlinkRefusedError:
        return SymlinkRefusedError(
            f"{self.root / shown} is a symbolic link (or not a folder) inside {self.root}; "
            "the service never follows a link out of a folder it writes: replace the link with "
            "the folder itself"
        )

    @contextlib.contextmanager
    def dir_fd(self, parts: tuple[str, ...] | str, *, create: bool = False) -> Iterator[int]:
        """A descriptor of the folder `parts` below the root, opened component by component
        with O_NOFOLLOW (`create`: missing folders are made)."""
        if isinstance(parts, str):
            parts = parts_of(parts) if parts else ()
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        try:
            for index, name in enumerate(parts):
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise FileNotFoundError(
                            errno.ENOENT, "no such folder", str(self.root / "/".join(parts))
                        ) from None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                    child = self._open_child(fd, name, parts[: index + 1])
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._symlink("/".join(parts[: index + 1])) from None
                    raise
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _open_child(self, fd: int, name: str, shown: tuple[str, ...]) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._symlink("/".join(shown)) from None
            raise

    @contextlib.contextmanager
    def _parent(self, rel: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
        parts = parts_of(rel)
        with self.dir_fd(parts[:-1], create=create) as fd:
            yield fd, parts[-1]

    def makedirs(self, rel: str) -> None:
        with self.dir_fd(rel, create=True):
            pass

    # --- what lies there ----------------------------------------------------------------------
    def lstat(self, rel: str) -> os.stat_result | None:
        """The entry's own status (a link is not followed); None when nothing is there. A link
        or a file on the way to it raises SymlinkRefusedError."""
        try:
            with self._parent(rel) as (fd, name):
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, rel: str) -> bool:
        return self.lstat(rel) is not None

    def is_dir(self, rel: str) -> bool:
        info = self.lstat(rel) if rel else os.stat(self.root)
        return info is not None and stat.S_ISDIR(info.st_mode)

    def is_file(self, rel: str) -> bool:
        info = self.lstat(rel)
        return info is not None and stat.S_ISREG(info.st_mode)

    def entries(self, rel: str = "") -> list[tuple[str, os.stat_result]]:
        """(name, own status) of each entry of a folder, sorted by name; [] when it is absent.

        A name that is not UTF-8 is left out: nothing facesets writes is named so (manifests
        and messages carry names as UTF-8 text), so such an entry is someone else's, and
        listing it would only end a job at the first manifest that names it."""
        try:
            with self.dir_fd(rel) as fd:
                names = sorted(n for n in os.listdir(fd) if is_utf8(n))
                return [(n, os.stat(n, dir_fd=fd, follow_symlinks=False)) for n in names]
        except FileNotFoundError:
            return []

    def files(self, rel: str = "", suffix: str = "") -> list[str]:
        """The regular files of a folder (relative to the root), sorted; a link is skipped."""
        prefix = f"{rel}/" if rel else ""
        return [
            prefix + name
            for name, info in self.entries(rel)
            if stat.S_ISREG(info.st_mode) and name.endswith(suffix)
        ]

    def walk(self, rel: str = "") -> Iterator[str]:
        """Every regular file below `rel` (relative to the root); a symbolic link anywhere
        below raises SymlinkRefusedError, naming it."""
        for name, info in self.entries(rel):
            child = f"{rel}/{name}" if rel else name
            if stat.S_ISLNK(info.st_mode):
                raise self._symlink(child)
            if stat.S_ISDIR(info.st_mode):
                yield from self.walk(child)
            elif stat.S_ISREG(info.st_mode):
                yield child

    def refuse_links(self, rel: str = "") -> None:
        """SymlinkRefusedError naming the first symbolic link below `rel`, if any."""
        for _ in self.walk(rel):
            pass

    # --- reading ------------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        with self._parent(rel) as (fd, name):
            try:
                file_fd = os.open(name, _READ_FLAGS, dir_fd=fd)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise self._symlink(rel) from None
                raise
        try:
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                raise NotRegularError(f"{self.root / rel} is not a regular file")
            os.set_blocking(file_fd, True)
            with os.fdopen(file_fd, "rb") as handle:
                file_fd = -1
                return handle.read()
        finally:
            if file_fd >= 0:
                os.close(file_fd)

    def read_json(self, rel: str, default: Any = None) -> Any:
        try:
            data = self.read_bytes(rel)
        except FileNotFoundError:
            return default
        return json.loads(data.decode("utf-8"))

    # --- writing ------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes, mode: int = 0o644) -> None:
        """Readers see the old content or the new, never a part (a temporary file in the same
        folder, renamed over); parent folders are made."""
        with self._parent(rel, create=True) as (fd, name):
            tmp = f".{name}.{secrets.token_hex(4)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            file_fd = os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0), mode, dir_fd=fd)
            try:
                with os.fdopen(file_fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=fd)
                raise

    def write_json(self, rel: str, payload: Any) -> None:
        text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        self.write_bytes(rel, text.encode("utf-8"))

    def rename(self, src: str, dst: str, *, replace: bool = False) -> None:
        """One rename below the root (parent folders of `dst` are made); refuses to overwrite
        unless `replace`. Both ends are resolved without following a link."""
        with (
            self._parent(src) as (src_fd, src_name),
            self._parent(dst, create=True) as (
                dst_fd,
                dst_name,
            ),
        ):
            os.stat(src_name, dir_fd=src_fd, follow_symlinks=False)  # FileNotFoundError
            if not replace:
                try:
                    os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    raise FileExistsError(errno.EEXIST, "exists already", str(self.root / dst))
            os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)

    def unlink(self, rel: str, *, missing_ok: bool = True) -> None:
        try:
            with self._parent(rel) as (fd, name):
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "is a folder", str(self.root / rel))
                os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmdir(self, rel: str) -> bool:
        """Remove an empty folder; False when it is absent or holds anything."""
        try:
            with self._parent(rel) as (fd, name):
                os.rmdir(name, dir_fd=fd)
        except (FileNotFoundError, OSError):
            return False
        return True


def parent_of(rel: str) -> str:
    parent = PurePosixPath(rel).parent.as_posix()
    return "" if parent == "." else parent
