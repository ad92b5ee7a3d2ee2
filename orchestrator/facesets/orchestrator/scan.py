"""Listing a photo tree: image files, each with its sha256, or the reason it cannot be read."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from facesets.common import settings

CHUNK = 1 << 20


@dataclass(frozen=True)
class ScannedFile:
    path: str  # absolute
    sha256: str = ""
    size: int = 0
    error: str = ""  # why it could not be read


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
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        return ScannedFile(path, error=f"cannot read: {error.strerror or error}")
    return ScannedFile(path, digest.hexdigest(), size)


def hash_files(
    paths: list[str], workers: int = 4, show_progress: bool = True
) -> Iterator[ScannedFile]:
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(paths), desc="hashing", unit="file", disable=not show_progress, leave=False
        ) as bar,
    ):
        for scanned in pool.map(hash_file, paths):
            bar.update()
            yield scanned
