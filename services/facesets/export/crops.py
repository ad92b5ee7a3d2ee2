"""Square face crops for roop-unleashed, checked to hold exactly one detectable face.

roop-unleashed re-detects every face in every PNG of a faceset and averages them all into
the identity, so a crop that also shows part of a bystander poisons the set. Each crop is
therefore counted by a real detector; one that holds more (or fewer) than one face is cut
again tighter, and dropped when no padding gives exactly one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facesets.common import settings
from facesets.common.decode import DecodeError, decode
from facesets.common.roots import open_regular

CountFaces = Callable[[list[np.ndarray]], list[int]]
Box = tuple[float, float, float, float]

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 6]

REASON_EXTRA_FACES = "extra_faces"
REASON_NO_FACE = "no_face"


class SourceImageError(OSError):
    """A source photo is missing, unreadable or not a decodable image."""


def load_image_oriented(
    path: str | Path,
    sha256: str = "",
    max_pixels: int = settings.shared().decode.max_image_pixels,
) -> np.ndarray:
    """A photo as BGR uint8 with its EXIF orientation applied (the frame boxes refer to).

    With `sha256` (the digest the store embedded the photo under), a file whose bytes are no
    longer that photo is refused before it is decoded: a photo replaced or edited since, even
    one of the same size, would put another face (another person's) where the box cuts."""
    source = Path(path)
    try:
        with open_regular(source) as handle:  # a FIFO or a device is refused, never waited on
            data = handle.read()
    except FileNotFoundError as exc:
        raise SourceImageError(f"{source}: file not found") from exc
    except OSError as exc:
        raise SourceImageError(f"{source}: unreadable: {exc.strerror or exc}") from exc
    if not data:
        raise SourceImageError(f"{source}: the file is empty")
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise SourceImageError(
            f"{source}: changed since it was embedded (not the photo the store holds); run "
            "`facesets embed` on its folder again"
        )
    try:
        return decode(data, max_pixels).bgr
    except DecodeError as exc:
        raise SourceImageError(f"{source}: {exc.message}") from exc


def square_region(bbox: Box, pad_ratio: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the square around the box, padded by pad_ratio of its long side on
    every edge, in whole pixels so the crop does not depend on sub-pixel resampling."""
    x1, y1, x2, y2 = bbox
    long_side = max(x2 - x1, y2 - y1)
    side = max(1, int(round(long_side * (1.0 + 2.0 * pad_ratio))))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def crop_square(image: np.ndarray, bbox: Box, pad_ratio: float, out_size: int) -> np.ndarray:
    """The padded square around `bbox`, resized to out_size².

    Parts outside the photo are constant black: mirrored borders could reflect half a face
    into the crop, which roop's detector would count as another face.
    """
    height, width = image.shape[:2]
    x0, y0, side = square_region(bbox, pad_ratio)
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(width, x0 + side), min(height, y0 + side)
    if ix1 <= ix0 or iy1 <= iy0:
        raise ValueError(f"box {bbox} lies outside the {width}x{height} image")
    inner = image[iy0:iy1, ix0:ix1]
    square = cv2.copyMakeBorder(
        inner,
        iy0 - y0,
        (y0 + side) - iy1,
        ix0 - x0,
        (x0 + side) - ix1,
        cv2.BORDER_CONSTANT,
        value=(0, 0, 0),
    )
    interpolation = cv2.INTER_AREA if side > out_size else cv2.INTER_CUBIC
    return cv2.resize(square, (out_size, out_size), interpolation=interpolation)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes that depend on the pixels only (OpenCV writes no time or text chunks)."""
    ok, data = cv2.imencode(".png", image, PNG_PARAMS)
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def phash(image: np.ndarray) -> int:
    """64-bit perceptual hash (DCT of a 32x32 grey image, signs of the 8x8 low band)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    band = cv2.dct(small)[:8, :8].ravel()
    bits = band > np.median(band[1:])  # the DC term would dominate the median
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass
class CheckedCrop:
    """Outcome of the one-face check of one face: the crop kept, or why none was."""

    image: np.ndarray | None
    pad_ratio: float | None  # padding of the kept crop
    attempts: list[tuple[float, int]] = field(default_factory=list)  # (padding, faces found)
    reason: str = ""  # REASON_* when dropped
    last: np.ndarray | None = None  # the tightest crop tried, for review when dropped

    @property
    def recropped(self) -> bool:
        return self.image is not None and len(self.attempts) > 1


def padding_ladder(
    pad_ratio: float, tighter: Sequence[float] = settings.export().crops.recrop_pads
) -> list[float]:
    """The requested padding, then each tighter one, narrowest last."""
    return [pad_ratio, *sorted((p for p in tighter if p < pad_ratio), reverse=True)]


def checked_crops(
    items: Sequence[tuple[np.ndarray, Box]],
    count_faces: CountFaces,
    *,
    pad_ratio: float,
    out_size: int,
    tighter: Sequence[float] = settings.export().crops.recrop_pads,
) -> list[CheckedCrop]:
    """Crop each (image, box) and keep the widest padding at which exactly one face is found.

    One `count_faces` call per padding level covers every crop still pending, so a remote
    detector sees a batch rather than single images.
    """
    results = [CheckedCrop(image=None, pad_ratio=None) for _ in items]
    pending = list(range(len(items)))
    for pad in padding_ladder(pad_ratio, tighter):
        if not pending:
            break
        crops = [crop_square(items[i][0], items[i][1], pad, out_size) for i in pending]
        counts = list(count_faces(crops))
        if len(counts) != len(crops):
            raise RuntimeError(f"face counter answered {len(counts)} counts for {len(crops)} crops")
        still: list[int] = []
        for index, crop, count in zip(pending, crops, counts, strict=True):
            result = results[index]
            result.attempts.append((pad, int(count)))
            result.last = crop
            if int(count) == 1:
                result.image, result.pad_ratio, result.last = crop, pad, None
            else:
                still.append(index)
        pending = still
    for index in pending:
        result = results[index]
        # A bystander at any padding is the cause even when the tightest cut lost the face too.
        crowded = any(count > 1 for _, count in result.attempts)
        result.reason = REASON_EXTRA_FACES if crowded else REASON_NO_FACE
    return results
