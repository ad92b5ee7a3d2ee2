"""Listing a photo tree: image files, each with its sha256, or the reason it cannot be read."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from facesets.common import settings

CHUNK = 1 << 20


@dataclass(frozen=True)
class ScannedFile:
    path: str  # absolute
    sha256: str = ""
    size: int = 0
    error: str = ""  # why it could not be read
    mtime_ns: int = 0
    hashed: bool = False  # read and hashed now, rather than known unchanged


class Known(Protocol):
    """What a store remembers of a path: its content's digest, size and modification time."""

    sha256: str
    size: int
    mtime_ns: int


def list_images(root: Path, extensions: tuple[str, ...] = settings.IMAGE_EXTENSIONS) -> list[str]:
    """Every file under root with an image extension, sorted, as absolute paths.

    Links that point nowhere are kept so that they are reported, not silently skipped.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in files:
            if name.lower().endswith(extensions) and not name.startswith("."):
                found.append(os.path.join(folder, name))
    return sorted(found)


def hash_file(path: str) -> ScannedFile:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            # The time before reading: a change while hashing shows up as a newer time later.
            mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        return ScannedFile(path, error=f"cannot read: {error.strerror or error}")
    return ScannedFile(path, digest.hexdigest(), size, mtime_ns=mtime_ns, hashed=True)


def scan_file(path: str, known: Known | None) -> ScannedFile:
    """A file's digest: the one known for it while its size and modification time are
    unchanged (as git and rsync judge a file), else read and hashed now."""
    if known is not None and known.mtime_ns:
        try:
            stat = os.stat(path)
        except OSError:
            return hash_file(path)  # reports why it cannot be read
        if stat.st_size == known.size and stat.st_mtime_ns == known.mtime_ns:
            return ScannedFile(path, known.sha256, known.size, mtime_ns=known.mtime_ns)
    return hash_file(path)


def scan_files(
    paths: list[str],
    known: Mapping[str, Known] | None = None,
    workers: int = 4,
    show_progress: bool = True,
) -> Iterator[ScannedFile]:
    """Each path's digest, in order; `known` (path -> what a store remembers) spares reading
    the files that have not changed since."""
    known = known or {}
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(paths), desc="hashing", unit="file", disable=not show_progress, leave=False
        ) as bar,
    ):
        for scanned in pool.map(lambda path: scan_file(path, known.get(path)), paths):
            bar.update()
            yield scanned
