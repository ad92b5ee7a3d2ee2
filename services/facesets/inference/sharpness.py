"""Sharpness of a face that means the same at every resolution.

The variance of a Laplacian over raw pixels measures detail per pixel, so one sharp face
enlarged 4x scores ~50x lower. Here the face box is first brought to a canonical short side
(the settings' `sharpness.face_side`, the recognizer's 112 px; INTER_AREA when shrinking, so
large faces are averaged rather than aliased), then lightly smoothed (`sharpness.sigma`) so
that JPEG blocks and resampling kernels do not count as detail: the score is the variance of
the Laplacian of Gaussian of the face's gray levels at that size. A face whose own pixels are
blurred (defocus, motion, a low-resolution face enlarged) scores low at any size.
"""

from __future__ import annotations

import cv2
import numpy as np

from facesets.common import settings
from facesets.v1 import common_pb2

# What `face_sharpness` computes, as stored next to each face's value.
MEASURE = common_pb2.BLUR_MEASURE_CANONICAL


def _face_gray(bgr: np.ndarray, bbox: np.ndarray) -> np.ndarray | None:
    h, w = bgr.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in bbox[:4])
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 3 or y2 - y1 < 3:
        return None
    patch = bgr[y1:y2, x1:x2]
    gray = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY) if patch.ndim == 3 else patch
    return gray.astype(np.float32)


def canonical_face(
    bgr: np.ndarray, bbox: np.ndarray, side: int = settings.inference().sharpness.face_side
) -> np.ndarray | None:
    """The face box's gray levels (float32) resized to a short side of `side` pixels."""
    gray = _face_gray(bgr, bbox)
    if gray is None:
        return None
    scale = side / min(gray.shape)
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(gray, size, interpolation=interpolation)


def face_sharpness(
    bgr: np.ndarray,
    bbox: np.ndarray,
    side: int = settings.inference().sharpness.face_side,
    sigma: float = settings.inference().sharpness.sigma,
) -> float:
    """Variance of the Laplacian of Gaussian over the face at the canonical size: low means
    blurred (0 for a box too small to measure)."""
    face = canonical_face(bgr, bbox, side)
    if face is None:
        return 0.0
    if sigma > 0:
        face = cv2.GaussianBlur(face, (0, 0), sigma)
    return float(cv2.Laplacian(face, cv2.CV_32F).var())
