"""Image decoding for every service: the photo formats of common/photo_formats.py (HEIF through
pillow-heif, AVIF through Pillow), EXIF orientation and capture time, the decompression-bomb
limit checked on the header before any pixel is decoded, reduced-size JPEG decoding."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
import simplejpeg
from PIL import AvifImagePlugin, Image, ImageOps, UnidentifiedImageError

from facesets.client.files import FileStamp
from facesets.common import settings
from facesets.common.roots import PathRefused, Roots, open_regular
from facesets.contract import photo_formats
from facesets.v1 import common_pb2

# Limits are checked here against the header, before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None
# A HEIF file opens as its primary image; its thumbnails, depth maps and auxiliary images
# (which a burst or a portrait photo carries) are never read.
pillow_heif.register_heif_opener(
    thumbnails=False,
    depth_images=False,
    aux_images=False,
    decode_threads=settings.shared().decode.photo_threads,
)
AvifImagePlugin.DEFAULT_MAX_THREADS = settings.shared().decode.photo_threads

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_ORIENTATION = 0x0112


class DecodeError(Exception):
    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Decoded:
    """Pixels of one image at `scale` (decoded pixels per full-image pixel), BGR."""

    data: bytes
    bgr: np.ndarray
    scale: float
    width: int  # full size after EXIF orientation
    height: int
    capture_time: str


def read_source(
    request: common_pb2.ImageRequest, max_bytes: int, roots: Roots | None = None
) -> bytes:
    """The bytes of one image: sent inline, or read from a path the service's roots allow (no
    roots: an in-process caller that trusts its own paths). Only regular files are read."""
    if request.WhichOneof("source") == "path":
        try:
            if roots is not None:
                handle = roots.open_regular(request.path)
            else:
                handle = open_regular(Path(request.path))
            with handle:
                _check_stamp(request, handle.fileno())
                # Reading max_bytes + 1 would allocate the whole limit for every photo.
                size = os.fstat(handle.fileno()).st_size
                data = handle.read((size if 0 < size <= max_bytes else max_bytes) + 1)
                _check_stamp(request, handle.fileno())  # not written to while it was read
        except PathRefused as error:
            raise DecodeError(common_pb2.ERROR_REASON_UNREADABLE, str(error)) from error
        except OSError as error:
            raise DecodeError(
                common_pb2.ERROR_REASON_UNREADABLE, f"cannot read {request.path}: {error.strerror}"
            ) from error
    else:
        data = request.data
    if not data:
        raise DecodeError(common_pb2.ERROR_REASON_EMPTY_FILE, "the file is empty")
    if len(data) > max_bytes:
        raise DecodeError(
            common_pb2.ERROR_REASON_TOO_LARGE,
            f"the file is larger than the {max_bytes // (1 << 20)} MiB limit",
        )
    return data


def _check_stamp(request: common_pb2.ImageRequest, fd: int) -> None:
    """DecodeError CHANGED when the file open is not the one the client hashed (its size or
    modification time differ): its faces would be stored under the other bytes' digest."""
    if not request.HasField("expect"):
        return
    if not FileStamp(request.expect.size, request.expect.mtime_ns).matches(fd):
        raise DecodeError(
            common_pb2.ERROR_REASON_CHANGED,
            f"{request.path} changed since it was hashed (its size or modification time); it "
            "was not read",
        )


# Leading bytes of the formats read, to tell a damaged photo from a file that is no photo.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF8", "GIF"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (8, b"WEBP", "WebP"),
    (4, b"ftypavi", "AVIF"),
    (4, b"ftyphe", "HEIF"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypmsf1", "HEIF"),
)


def _kind(error: BaseException) -> str:
    """What went wrong, without the decoder's own words: those may quote the file's bytes
    (a header field, a chunk name), and error messages never carry file contents."""
    return type(error).__name__


def _signature(data: bytes) -> str | None:
    return next((name for at, magic, name in _SIGNATURES if data[at:].startswith(magic)), None)


def open_image(
    source: bytes | str | Path, max_pixels: int = settings.shared().decode.max_image_pixels
) -> Image.Image:
    """A photo opened in one of the formats read, its header checked against `max_pixels`;
    nothing decoded yet. Raises DecodeError."""
    if isinstance(source, bytes):
        return _open(source, max_pixels)
    try:
        with open_regular(Path(source)) as handle:
            return _open(handle.read(), max_pixels)
    except PathRefused as error:
        raise DecodeError(common_pb2.ERROR_REASON_UNREADABLE, str(error)) from error
    except OSError as error:
        raise DecodeError(
            common_pb2.ERROR_REASON_UNREADABLE, f"cannot read {source}: {error.strerror}"
        ) from error


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=photo_formats.DECODED_FORMATS)
    except UnidentifiedImageError as error:
        claimed = _signature(data)
        if claimed:
            raise DecodeError(
                common_pb2.ERROR_REASON_CORRUPT,
                f"damaged {claimed} image: its header is cut or corrupt",
            ) from error
        raise DecodeError(
            common_pb2.ERROR_REASON_NOT_AN_IMAGE,
            "not an image in a format read here: " + ", ".join(photo_formats.DECODED_FORMATS),
        ) from error
    except Exception as error:  # damaged headers surface as assorted errors
        raise DecodeError(
            common_pb2.ERROR_REASON_CORRUPT, f"unreadable image header ({_kind(error)})"
        ) from error
    width, height = image.size
    if width * height > max_pixels:
        raise DecodeError(
            common_pb2.ERROR_REASON_TOO_MANY_PIXELS,
            f"{width}x{height} is {width * height:,} pixels, over the {max_pixels:,} limit",
        )
    if width == 0 or height == 0:
        raise DecodeError(common_pb2.ERROR_REASON_CORRUPT, "the image has no pixels")
    return image


def _capture_time(image: Image.Image) -> str:
    try:
        value = image.getexif().get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL)
        if isinstance(value, str):
            return datetime.strptime(value.strip("\x00 "), "%Y:%m:%d %H:%M:%S").isoformat()
    except Exception:  # missing or malformed EXIF is common and harmless
        pass
    return ""


# libjpeg-turbo's DCT-domain reductions (1, 1/2, 1/4, 1/8), decoded straight to BGR by
# simplejpeg: the same pixels as OpenCV's decoding, bit for bit (tests/test_decode_jpeg.py),
# for less CPU: a 4000x3000 photo at 1/2 size 36.9 ms against 46.5, at full size 48 against 74
# (one thread; README, "Embedding"). OpenCV stays for what libjpeg-turbo cannot turn into BGR
# (CMYK and YCCK JPEGs).
_JPEG_REDUCTIONS = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
    (1, cv2.IMREAD_COLOR),
)
_JPEG_END = b"\xff\xd9"

# EXIF orientation (2-8) undone on decoded pixels, as OpenCV and Pillow's exif_transpose do.
_ORIENTED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _jpeg_reduction(min_scale: float) -> tuple[int, int]:
    """(factor, OpenCV flag) of the smallest reduction keeping at least min_scale."""
    return next((factor, f) for factor, f in _JPEG_REDUCTIONS if 1 / factor >= min_scale)


def decode_cost(image: Image.Image, min_scale: float) -> int:
    """Bytes a decode of `image` holds at its peak, estimated from the header: a JPEG decodes
    straight to BGR at its reduction; any other format decodes at full size in its own mode,
    then is converted to RGB, copied into an array and converted to BGR."""
    width, height = image.size
    if image.format in ("JPEG", "MPO"):
        factor, _ = _jpeg_reduction(min_scale)
        return -(-width // factor) * -(-height // factor) * 3
    mode_bytes = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I": 4, "F": 4}.get(
        image.mode, len(image.getbands())
    )
    converted = 0 if image.mode == "RGB" else 3
    return width * height * (mode_bytes + converted + 3 + 3)


class DecodeBudget:
    """The bytes image decodes may hold at once: a decode waits until its estimated cost fits,
    and a decode whose cost alone is over the whole budget is refused."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._changed = threading.Condition()

    @property
    def used(self) -> int:
        with self._changed:
            return self._used

    @contextmanager
    def reserve(self, need: int, what: str) -> Iterator[None]:
        if need > self.total:
            raise DecodeError(
                common_pb2.ERROR_REASON_TOO_MANY_PIXELS,
                f"decoding {what} needs about {need / (1 << 20):,.0f} MiB, more than the whole "
                f"decode budget of {self.total / (1 << 20):,.0f} MiB (--max-decode-bytes)",
            )
        with self._changed:
            self._changed.wait_for(lambda: self._used + need <= self.total)
            self._used += need
        try:
            yield
        finally:
            with self._changed:
                self._used -= need
                self._changed.notify_all()


def _decode_jpeg(image: Image.Image, data: bytes, min_scale: float, orientation: int) -> np.ndarray:
    # A cut-off JPEG decodes to grey-filled pixels instead of failing; a JPEG whose end-of-image
    # marker is missing from its second half (the first may hold an EXIF thumbnail's) is cut.
    if data.rfind(_JPEG_END) < len(data) // 2:
        raise DecodeError(
            common_pb2.ERROR_REASON_CORRUPT, "damaged image data: the JPEG is cut off"
        )
    factor, flag = _jpeg_reduction(min_scale)
    if image.mode == "CMYK":
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)  # orients as it decodes
        if bgr is None:
            raise DecodeError(common_pb2.ERROR_REASON_CORRUPT, "damaged image data")
        return bgr
    width, height = image.size
    try:
        # The smallest of libjpeg-turbo's n/8 scales that holds 1/factor of each side: 1/factor
        # itself. Not strict: data damaged past the header decodes as far as it goes, as with
        # OpenCV.
        bgr = simplejpeg.decode_jpeg(
            data,
            "BGR",
            min_width=-(-width // factor),
            min_height=-(-height // factor),
            strict=False,
        )
    except ValueError as error:
        raise DecodeError(
            common_pb2.ERROR_REASON_CORRUPT, f"damaged image data ({_kind(error)})"
        ) from error
    turn = _ORIENTED.get(orientation)
    return turn(bgr) if turn else bgr


def decode(
    data: bytes,
    max_pixels: int,
    min_scale: float = 1.0,
    long_side: int | None = None,
    budget: DecodeBudget | None = None,
) -> Decoded:
    """Decode at the smallest JPEG reduction (1, 1/2, 1/4, 1/8) that keeps >= min_scale.

    With `long_side`, the scale only needs to keep the long side at least that many pixels.
    With a `budget`, the decode first reserves its estimated cost there (waiting for room).
    """
    image = _open(data, max_pixels)
    full_w, full_h = image.size
    if long_side:
        min_scale = min(min_scale, long_side / max(full_w, full_h))
    if budget is None:
        return _decode_checked(image, data, min_scale)
    with budget.reserve(decode_cost(image, min_scale), f"this {full_w}x{full_h} image"):
        return _decode_checked(image, data, min_scale)


def _decode_checked(image: Image.Image, data: bytes, min_scale: float) -> Decoded:
    """Damaged data surfaces from Pillow and OpenCV as assorted exceptions; each is a
    DecodeError here, so no input ends as an internal error."""
    try:
        return _decode_opened(image, data, min_scale)
    except DecodeError:
        raise
    except Exception as error:
        raise DecodeError(
            common_pb2.ERROR_REASON_CORRUPT, f"damaged image data: {error}"
        ) from error


def _decode_opened(image: Image.Image, data: bytes, min_scale: float) -> Decoded:
    full_w, full_h = image.size
    capture_time = _capture_time(image)
    orientation = image.getexif().get(_ORIENTATION, 1)
    orientation = orientation if isinstance(orientation, int) else 1
    transposed = orientation in (5, 6, 7, 8)
    width, height = (full_h, full_w) if transposed else (full_w, full_h)
    if image.format in ("JPEG", "MPO"):
        bgr = _decode_jpeg(image, data, min_scale, orientation)
    else:
        # Full size: HEIF and AVIF have no reduced decoding (a thumbnail may differ from the
        # photo), so they cost more than a JPEG of the same size.
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            bgr = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)
        except Exception as error:  # truncated data, bad chunks, ...
            raise DecodeError(
                common_pb2.ERROR_REASON_CORRUPT, f"damaged image data ({_kind(error)})"
            ) from error
    return Decoded(data, bgr, bgr.shape[1] / width, width, height, capture_time)
