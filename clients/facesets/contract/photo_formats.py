"""The photo formats facesets reads, in one place: the folder scanner picks files by these
extensions (case-insensitively), and the decoder opens only these formats, whatever a file's
name says. A light module: the scanner imports it without any image library."""

from __future__ import annotations

import os

# Extension (lower case) -> the Pillow formats (plugins that open it) a file of that name may
# hold. A JPEG with more pictures after the first (MP format) opens through JPEG as "MPO".
PHOTO_FORMATS: dict[str, tuple[str, ...]] = {
    ".jpg": ("JPEG",),
    ".jpeg": ("JPEG",),
    ".png": ("PNG",),
    ".webp": ("WEBP",),
    ".bmp": ("BMP",),
    ".tif": ("TIFF",),
    ".tiff": ("TIFF",),
    ".gif": ("GIF",),
    ".heic": ("HEIF",),  # iPhones since 2017, many Android phones
    ".heif": ("HEIF",),
    ".hif": ("HEIF",),  # cameras' HEIF (Canon, Fujifilm, Sony)
    ".avif": ("AVIF",),
}
PHOTO_EXTENSIONS: tuple[str, ...] = tuple(PHOTO_FORMATS)
DECODED_FORMATS: tuple[str, ...] = tuple(
    sorted({name for names in PHOTO_FORMATS.values() for name in names})
)
NO_EXTENSION = "(no extension)"


def extension(name: str) -> str:
    """The extension of a file name, lower case with its dot; NO_EXTENSION when it has none."""
    suffix = os.path.splitext(os.path.basename(name))[1].lower()
    return suffix if suffix not in ("", ".") else NO_EXTENSION


def is_photo_name(name: str) -> bool:
    """A file the scanner takes for a photo: a known extension in any case, not hidden."""
    base = os.path.basename(name)
    return not base.startswith(".") and extension(base) in PHOTO_FORMATS
