"""The report's thumbnail cache: one small JPEG per crop in OUT/report/thumbs/.

A thumbnail's file name is a digest of the crop's path, size and modification time (and of the
thumbnail's own size and quality), so a crop rewritten by a later export gets a new thumbnail
while an unchanged one is never decoded again. Each thumbnail is written to a temporary file
and renamed; thumbnails no report page uses any more are removed after the pages are written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import structlog

from facesets.common import settings
from facesets.contract import layout

log = structlog.get_logger(__name__)

Progress = Callable[[str, int, int], None]
THUMB_SUFFIX = ".jpg"
_THUMB_NAME = re.compile(r"[0-9a-f]{24}\.jpg")
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
        size: int = settings.REPORT_THUMB_SIZE,
        quality: int = settings.REPORT_THUMB_QUALITY,
        workers: int = settings.REPORT_THUMB_WORKERS,
    ) -> None:
        self.out = Path(out).resolve()
        self.folder = Path(folder)
        self.size = size
        self.quality = quality
        self.workers = max(1, workers)
        self.stats = ThumbnailStats()

    def _key(self, rel: str, source: Path) -> str | None:
        """The thumbnail's file name for the crop as it is now; None if there is no such crop."""
        try:
            stat = source.stat()
        except OSError:
            return None
        key = f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.size}\0{self.quality}"
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + THUMB_SUFFIX

    def _source(self, rel: str) -> Path | None:
        path = (self.out / rel).resolve()
        return path if path.is_relative_to(self.out) and path.is_file() else None

    def _make(self, source: Path, target: Path) -> bool:
        try:
            thumb = make_thumbnail(source.read_bytes(), self.size, self.quality)
        except OSError as exc:
            log.warning("report.crop_unreadable", path=str(source), error=str(exc))
            return False
        if thumb is None:
            log.warning("report.crop_undecodable", path=str(source))
            return False
        layout.atomic_write_bytes(target, thumb)
        return True

    def build(self, rels: Sequence[str], progress: Progress | None = None) -> dict[str, str]:
        """Thumbnails of the crops `rels` (relative to OUT), made where missing.

        Returns crop → thumbnail file name (inside the folder) for every crop that has one.
        """
        ready: dict[str, str] = {}
        todo: list[tuple[str, Path, str]] = []
        for rel in rels:
            source = self._source(rel)
            name = self._key(rel, source) if source else None
            if source is None or name is None:
                self.stats.failed += 1
            elif (self.folder / name).is_file() and (self.folder / name).stat().st_size > 0:
                ready[rel] = name
                self.stats.reused += 1
            else:
                todo.append((rel, source, name))
        if todo:
            self.folder.mkdir(parents=True, exist_ok=True)
        total = len(todo)
        if progress and total:
            progress("thumbnails", 0, total)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="thumbs") as pool:
            made = pool.map(lambda job: self._make(job[1], self.folder / job[2]), todo)
            for done, ((rel, _, name), ok) in enumerate(zip(todo, made, strict=True), 1):
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
        if not self.folder.is_dir():
            return 0
        for path in self.folder.iterdir():
            name = path.name
            stale = _THUMB_NAME.fullmatch(name) and name not in keep
            if (stale or _TEMP_NAME.fullmatch(name)) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        return removed
