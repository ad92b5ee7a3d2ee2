"""A lossless PNG encoder for BGR (or grey) uint8 arrays, on numpy and zlib alone.

The client sends crops to CountFaces as PNG; encoding them here keeps OpenCV out of the client
library. Rows are stored unfiltered at a fast zlib level: the bytes only cross a local socket.
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads where a PNG is made: the `facesets` command mostly never does
    import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """PNG bytes of an OpenCV-style image: (h, w) grey, (h, w, 3) BGR or (h, w, 4) BGRA."""
    import numpy as np

    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        raise ValueError(f"PNG crops must be uint8, not {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOUR_TYPES or 0 in pixels.shape[:2]:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    height, width, channels = pixels.shape
    if channels >= 3:  # OpenCV's BGR(A) order to PNG's RGB(A)
        pixels = pixels[:, :, [2, 1, 0, *range(3, channels)]]
    rows = np.empty((height, 1 + width * channels), np.uint8)
    rows[:, 0] = 0  # filter type "none" on every row
    rows[:, 1:] = pixels.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)),
            _chunk(b"IEND", b""),
        )
    )
