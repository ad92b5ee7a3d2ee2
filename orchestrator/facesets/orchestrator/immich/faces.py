"""How big an asset's faces are, in the original's pixels."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from facesets.contract.photo_formats import DECODED_FORMATS
from facesets.orchestrator.immich.api import Face


def biggest_face_short(
    faces: Sequence[Face], original_size: tuple[int, int] | None
) -> float | None:
    """The largest face short edge in the original's pixels; None when that needs the
    original's size and it is unknown."""
    best: float | None = None
    for face in faces:
        short = max(0.0, min(face.x2 - face.x1, face.y2 - face.y1))
        space_long = max(face.image_width, face.image_height)
        if space_long > 0:
            if original_size is None:
                return None
            short *= max(original_size) / space_long
        best = short if best is None else max(best, short)
    return best


@functools.cache
def _heif_opener() -> None:
    """HEIC/HEIF originals open as their primary image; Pillow reads AVIF itself. Registered
    on first use: Pillow and pillow_heif take 25 ms to load, at every command otherwise."""
    import pillow_heif

    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def decoded_size(path: Path) -> tuple[int, int] | None:
    """An original's pixel size from its header (nothing is decoded); None when unknown."""
    from PIL import Image

    _heif_opener()
    try:
        with Image.open(path, formats=DECODED_FORMATS) as image:
            width, height = image.size
    except Exception:  # any format or decoder failure means "unknown", decided by the caller
        return None
    return (width, height) if width > 0 and height > 0 else None
