"""The report's thumbnail cache: one small JPEG per crop in OUT/report/thumbs/.

A thumbnail's file name is a digest of the crop's path, size and modification time (and of the
thumbnail's own size and quality), so a crop rewritten by a later export gets a new thumbnail
while an unchanged one is never decoded again. Each thumbnail is written to a temporary file
and renamed; thumbnails no report page uses any more are removed after the pages are written.
"""

from __future__ import annotations

import hashlib
import re
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import structlog

from facesets.common import settings
from facesets.common.beneath import Beneath, is_relative

log = structlog.get_logger(__name__)

Progress = Callable[[str, int, int], None]
THUMB_SUFFIX = ".jpg"
THUMB_NAME = re.compile(r"[0-9a-f]{24}\.jpg")
_TEMP_NAME = re.compile(r"\.[0-9a-f]{24}\.jpg\..*\.tmp")  # left by an interrupted write


@dataclass
class ThumbnailStats:
    made: int = 0
    reused: int = 0
    failed: int = 0  # crops missing, outside the export, or not decodable


def make_thumbnail(data: bytes, size: int, quality: int) -> bytes | None:
    """JPEG bytes of an image scaled so its longer side is at most `size`; None if undecodable."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale < 1.0:
        shape = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, shape, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(THUMB_SUFFIX, image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok else None


class ThumbnailCache:
    def __init__(
        self,
        out: Path,
        folder: Path,
        size: int = settings.export().report.thumb_size,
        quality: int = settings.export().report.thumb_quality,
        workers: int = settings.export().report.thumb_workers,
    ) -> None:
        self.out = Path(out).absolute()
        self.folder = Path(folder)
        # Every access goes through OUT's descriptor, one component at a time (no link).
        self.disk = Beneath(self.out)
        self.folder_rel = self.folder.absolute().relative_to(self.out).as_posix()
        self.size = size
        self.quality = quality
        self.workers = max(1, workers)
        self.stats = ThumbnailStats()

    def _key(self, rel: str) -> str | None:
        """The thumbnail's file name for the crop as it is now; None if there is no such crop
        (or it is not a regular file inside OUT: no link is followed)."""
        try:
            info = self.disk.lstat(rel) if is_relative(rel) else None
        except (OSError, ValueError):
            return None
        if info is None or not stat.S_ISREG(info.st_mode):
            return None
        key = f"{rel}\0{info.st_size}\0{info.st_mtime_ns}\0{self.size}\0{self.quality}"
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + THUMB_SUFFIX

    def _make(self, source: str, name: str) -> bool:
        try:
            thumb = make_thumbnail(self.disk.read_bytes(source), self.size, self.quality)
        except (OSError, ValueError) as exc:
            log.warning("report.crop_unreadable", path=str(self.out / source), error=str(exc))
            return False
        if thumb is None:
            log.warning("report.crop_undecodable", path=str(self.out / source))
            return False
        self.disk.write_bytes(f"{self.folder_rel}/{name}", thumb)
        return True

    def build(self, rels: Sequence[str], progress: Progress | None = None) -> dict[str, str]:
        """Thumbnails of the crops `rels` (relative to OUT), made where missing.

        Returns crop → thumbnail file name (inside the folder) for every crop that has one.
        """
        ready: dict[str, str] = {}
        todo: list[tuple[str, str]] = []
        for rel in rels:
            name = self._key(rel)
            if name is None:
                self.stats.failed += 1
                continue
            cached = self.disk.lstat(f"{self.folder_rel}/{name}")
            if cached is not None and stat.S_ISREG(cached.st_mode) and cached.st_size > 0:
                ready[rel] = name
                self.stats.reused += 1
            else:
                todo.append((rel, name))
        total = len(todo)
        if progress and total:
            progress("thumbnails", 0, total)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="thumbs") as pool:
            made = pool.map(lambda job: self._make(job[0], job[1]), todo)
            for done, ((rel, name), ok) in enumerate(zip(todo, made, strict=True), 1):
                if ok:
                    ready[rel] = name
                    self.stats.made += 1
                else:
                    self.stats.failed += 1
                if progress and (done % 64 == 0 or done == total):
                    progress("thumbnails", done, total)
        return ready

    def prune(self, keep: set[str]) -> int:
        """Remove thumbnails (and interrupted writes of them) not in `keep`; how many went."""
        removed = 0
        for name, info in self.disk.entries(self.folder_rel):
            stale = THUMB_NAME.fullmatch(name) and name not in keep
            if (stale or _TEMP_NAME.fullmatch(name)) and stat.S_ISREG(info.st_mode):
                self.disk.unlink(f"{self.folder_rel}/{name}")
                removed += 1
        return removed
