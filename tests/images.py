"""Test images: bad files of every kind, rotated and large photos built from LFW faces."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header and a tiny IDAT that claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def write_bad_files(folder: Path, good_jpeg: Path) -> dict[str, str]:
    """Bad files in folder; returns file name -> the error reason expected for it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    data = good_jpeg.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.jpg").write_text("this is not a photo\n")
    (folder / "bomb.png").write_bytes(png_claiming(30000, 30000))
    (folder / "broken-link.jpg").symlink_to(folder / "does-not-exist.jpg")
    return {
        "empty.jpg": "ERROR_REASON_EMPTY_FILE",
        "truncated.jpg": "ERROR_REASON_CORRUPT",
        "notes.jpg": "ERROR_REASON_NOT_AN_IMAGE",
        "bomb.png": "ERROR_REASON_TOO_MANY_PIXELS",
        "broken-link.jpg": "ERROR_REASON_UNREADABLE",
    }


def rotated_with_exif(photo: Path, capture_time: str = "2019:07:14 15:30:00") -> bytes:
    """The photo stored rotated 90° clockwise, with EXIF orientation 8 undoing it on display."""
    image = Image.open(photo).transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise to display
    exif.get_ifd(0x8769)[36867] = capture_time
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def large_canvas(
    photos: list[Path], size: tuple[int, int] = (4000, 3000), upscale: int = 3, quality: int = 90
) -> bytes:
    """A large JPEG with the given photos enlarged and placed side by side on a grey canvas."""
    canvas = Image.new("RGB", size, (118, 118, 118))
    x = 100
    for photo in photos:
        face = Image.open(photo).convert("RGB")
        face = face.resize((face.width * upscale, face.height * upscale), Image.Resampling.BICUBIC)
        canvas.paste(face, (x, (size[1] - face.height) // 2))
        x += face.width + 100
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# --- phone formats: HEIC/HEIF (pillow-heif) and AVIF (Pillow) ---------------------------------
# Encoder settings per format: lossless where `lossless`, else high quality (phones' own
# settings are lower, but the comparisons with the JPEG must not measure the encoder).
_LOSSLESS = {"HEIF": {"quality": -1, "chroma": 444}, "AVIF": {"quality": 100}}
_HIGH_QUALITY = {"HEIF": {"quality": 95}, "AVIF": {"quality": 95}, "JPEG": {"quality": 95}}
SUFFIXES = {"HEIF": ".heic", "AVIF": ".avif", "JPEG": ".jpg"}


def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def encode_as(
    photo: Path | Image.Image,
    fmt: str,
    *,
    rotated: bool = False,
    capture_time: str | None = None,
    lossless: bool = False,
) -> bytes:
    """The photo encoded as `fmt` ("HEIF", "AVIF" or "JPEG"), with EXIF written: with `rotated`,
    stored turned 90° clockwise with orientation 8 undoing it on display (HEIF writes it as
    its `irot` transform too, as phones do); `capture_time` as DateTimeOriginal."""
    _register_heif()
    image = (photo if isinstance(photo, Image.Image) else Image.open(photo)).convert("RGB")
    exif = Image.Exif()
    if rotated:
        image = image.transpose(Image.Transpose.ROTATE_270)
        exif[0x0112] = 8
    if capture_time:
        exif.get_ifd(0x8769)[36867] = capture_time
    options = (_LOSSLESS if lossless and fmt in _LOSSLESS else _HIGH_QUALITY)[fmt]
    buffer = io.BytesIO()
    image.save(buffer, fmt, exif=exif.tobytes(), **options)
    return buffer.getvalue()


def heif_claiming(photo: Path, width: int, height: int) -> bytes:
    """A valid HEIC whose header (its `ispe` box) claims width x height pixels."""
    data = encode_as(photo, "HEIF")
    at = data.find(b"ispe")
    assert at > 0, "no ispe box"
    return data[: at + 8] + struct.pack(">II", width, height) + data[at + 16 :]


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first `keep` share of a file, as an interrupted copy leaves it."""
    return data[: int(len(data) * keep)]


def heif_burst(primary: Path, others: list[Image.Image], primary_index: int = 1) -> bytes:
    """A HEIC holding several images (as a burst or a live photo does); `primary` is its
    primary image, stored at `primary_index`."""
    _register_heif()
    images = [image.convert("RGB") for image in others]
    images.insert(primary_index, Image.open(primary).convert("RGB"))
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        "HEIF",
        save_all=True,
        append_images=images[1:],
        primary_index=primary_index,
        quality=95,
    )
    return buffer.getvalue()


def side_by_side(left: Path, right: Path, dest: Path) -> Path:
    """A group photo: two photos joined side by side (heights matched), saved as JPEG."""
    with Image.open(left) as a, Image.open(right) as b:
        a, b = a.convert("RGB"), b.convert("RGB")
        if b.height != a.height:
            b = b.resize((round(b.width * a.height / b.height), a.height))
        joined = Image.new("RGB", (a.width + b.width, a.height))
        joined.paste(a, (0, 0))
        joined.paste(b, (a.width, 0))
    dest.parent.mkdir(parents=True, exist_ok=True)
    joined.save(dest, "JPEG", quality=95)
    return dest


def flat_png(width: int, height: int, colour: tuple[int, int, int] = (90, 140, 200)) -> bytes:
    """A valid RGB PNG of one flat colour: tiny on disk, width x height pixels when decoded.
    Compressed row by row, so making it never holds the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # Filter "up" (2) on every row after the first: each is all zeros, which deflates to nothing.
    first = b"\x00" + bytes(colour) * width
    following = b"\x02" + b"\x00" * (3 * width)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(first)]
    parts.extend(compressor.compress(following) for _ in range(height - 1))
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )
