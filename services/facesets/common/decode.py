"""Image decoding: EXIF orientation, decompression-bomb limits, reduced-size JPEG decoding."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesets.v1 import common_pb2

# Limits are checked here against the header, before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None

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


def read_source(request: common_pb2.ImageRequest, max_bytes: int) -> bytes:
    if request.WhichOneof("source") == "path":
        try:
            with open(request.path, "rb") as handle:
                # Reading max_bytes + 1 would allocate the whole limit for every photo.
                size = os.fstat(handle.fileno()).st_size
                data = handle.read((size if 0 < size <= max_bytes else max_bytes) + 1)
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


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise DecodeError(
            common_pb2.ERROR_REASON_NOT_AN_IMAGE, "not an image: no known image format"
        ) from error
    except Exception as error:  # damaged headers surface as assorted errors
        raise DecodeError(
            common_pb2.ERROR_REASON_CORRUPT, f"unreadable image header: {error}"
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


# libjpeg-turbo's DCT-domain reductions through OpenCV, which decodes straight to BGR and
# applies EXIF orientation itself: much faster than Pillow's decode, conversion and copy.
_JPEG_REDUCTIONS = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
    (1, cv2.IMREAD_COLOR),
)
_JPEG_END = b"\xff\xd9"


def _decode_jpeg(data: bytes, min_scale: float) -> np.ndarray:
    # OpenCV fills a cut-off JPEG with grey instead of failing; a JPEG whose end-of-image
    # marker is missing from its second half (the first may hold an EXIF thumbnail's) is cut.
    if data.rfind(_JPEG_END) < len(data) // 2:
        raise DecodeError(
            common_pb2.ERROR_REASON_CORRUPT, "damaged image data: the JPEG is cut off"
        )
    flag = next(f for factor, f in _JPEG_REDUCTIONS if 1 / factor >= min_scale)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if bgr is None:
        raise DecodeError(common_pb2.ERROR_REASON_CORRUPT, "damaged image data")
    return bgr


def decode(
    data: bytes, max_pixels: int, min_scale: float = 1.0, long_side: int | None = None
) -> Decoded:
    """Decode at the smallest JPEG reduction (1, 1/2, 1/4, 1/8) that keeps >= min_scale.

    With `long_side`, the scale only needs to keep the long side at least that many pixels.
    """
    image = _open(data, max_pixels)
    full_w, full_h = image.size
    if long_side:
        min_scale = min(min_scale, long_side / max(full_w, full_h))
    capture_time = _capture_time(image)
    transposed = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    width, height = (full_h, full_w) if transposed else (full_w, full_h)
    if image.format == "JPEG":
        bgr = _decode_jpeg(data, min_scale)
    else:
        try:
            rgb = ImageOps.exif_transpose(image).convert("RGB")
        except Exception as error:  # truncated data, bad chunks, ...
            raise DecodeError(
                common_pb2.ERROR_REASON_CORRUPT, f"damaged image data: {error}"
            ) from error
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    return Decoded(data, bgr, bgr.shape[1] / width, width, height, capture_time)
