"""Copies of sample photos carrying EXIF capture dates, and folder snapshots, for era tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from facesets.contract import layout

EXIF_IFD = 0x8769  # the Exif sub-IFD
DATE_TIME_ORIGINAL = 36867


def dated_copy(photo: Path, target: Path, capture_time: str | None) -> None:
    """A copy of an LFW photo carrying an EXIF DateTimeOriginal (or none)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(photo) as image:
        exif = Image.Exif()
        if capture_time:
            exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = capture_time
        image.save(target, "JPEG", quality=95, exif=exif.tobytes())


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the review report aside) with its content hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and layout.REPORT_DIR not in p.relative_to(folder).parts
    }
