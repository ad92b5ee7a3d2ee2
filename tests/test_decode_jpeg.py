"""JPEG decoding (common/decode.py) gives OpenCV's pixels, bit for bit, at every reduction and
EXIF orientation: the faster decoder changes no face's embedding."""

from __future__ import annotations

import io
import itertools

import cv2
import numpy as np
import pytest
from PIL import Image

from facesets.common.decode import DecodeError, decode

_OPENCV_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_MAX_PIXELS = 100_000_000


def _jpeg(pixels: np.ndarray, mode: str, orientation: int, **options: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(
        buffer, "JPEG", quality=90, exif=exif.tobytes(), **options
    )
    return buffer.getvalue()


def _opencv(data: bytes, factor: int) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), _OPENCV_FLAGS[factor])


@pytest.mark.parametrize(("width", "height"), [(7, 3), (203, 151), (250, 250)])
def test_every_reduction_and_orientation_matches_opencv(width: int, height: int) -> None:
    rng = np.random.default_rng(width)
    # Smooth content with noise on it, as a photo has: every DCT coefficient matters.
    gradient = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 20, (height, width, 3))
    pixels = np.clip(gradient + noise + 30, 0, 255).astype(np.uint8)
    cases = itertools.product(range(1, 9), [("RGB", 0), ("RGB", 2), ("L", -1)], [False, True])
    compared = 0
    for orientation, (mode, subsampling), progressive in cases:
        data = _jpeg(pixels, mode, orientation, subsampling=subsampling, progressive=progressive)
        for factor in (1, 2, 4, 8):
            decoded = decode(data, _MAX_PIXELS, min_scale=1 / factor)
            expected = _opencv(data, factor)
            assert decoded.bgr.shape == expected.shape, (orientation, mode, factor)
            assert np.array_equal(decoded.bgr, expected), (orientation, mode, factor)
            # The upright size, whatever the reduction.
            upright = (height, width) if orientation < 5 else (width, height)
            assert (decoded.height, decoded.width) == upright
            compared += 1
    assert compared == 8 * 3 * 2 * 4


def test_a_cmyk_jpeg_is_decoded_and_oriented_as_opencv_does() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (120, 200, 3), np.uint8)
    for orientation in (1, 6):
        data = _jpeg(pixels, "CMYK", orientation)
        assert Image.open(io.BytesIO(data)).mode == "CMYK"
        for factor in (1, 2):
            decoded = decode(data, _MAX_PIXELS, min_scale=1 / factor)
            assert np.array_equal(decoded.bgr, _opencv(data, factor))
        assert decoded.bgr.shape[:2] == ((60, 100) if orientation == 1 else (100, 60))


def test_damaged_scan_data_decodes_or_fails_cleanly() -> None:
    """Bytes overwritten in the middle of the scan (the end marker kept): the decode either
    returns pixels of the right size, as OpenCV would, or raises DecodeError; never another
    exception."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, (300, 400, 3), np.uint8)
    data = bytearray(_jpeg(pixels, "RGB", 1))
    for seed in range(12):
        damaged = bytearray(data)
        spot = np.random.default_rng(seed).integers(len(data) // 3, len(data) - 10, 8)
        for at in spot:
            damaged[at] = 0xFF if seed % 2 else 0x00
        try:
            decoded = decode(bytes(damaged), _MAX_PIXELS, min_scale=0.5)
        except DecodeError:
            continue
        assert decoded.bgr.shape == (150, 200, 3)
