"""Composite quality of a face for swapping: pose, detector confidence, symmetry, size, focus.

Every component is normalised to [0, 1] (1 = best) and the composite is their weighted mean
with the settings' `quality.weights`. Keypoints follow InsightFace's order: left eye, right
eye, nose, left mouth corner, right mouth corner (left/right as seen in the image).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from facesets.common import settings
from facesets.export.records import FaceRow

COMPONENTS = ("frontality", "det_score", "symmetry", "size", "sharpness")


@dataclass(frozen=True)
class QualityScores:
    frontality: float
    det_score: float
    symmetry: float
    size: float
    sharpness: float
    composite: float

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 6) for key, value in asdict(self).items()}


def _upright(kps: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Keypoints rotated so the eye line is horizontal, and the inter-ocular distance.

    None when the geometry is degenerate (eyes on top of each other, mouth above the eyes).
    """
    pts = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye = pts[0], pts[1]
    delta = right_eye - left_eye
    eye_dist = float(np.hypot(*delta))
    if not np.isfinite(eye_dist) or eye_dist < 1e-6:
        return None
    angle = math.atan2(delta[1], delta[0])
    cos, sin = math.cos(-angle), math.sin(-angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    upright = (pts - (left_eye + right_eye) / 2) @ rot.T
    if upright[3:, 1].mean() <= 1e-6:  # mouth must lie below the eyes
        return None
    return upright, eye_dist


def pose_from_keypoints(kps: np.ndarray) -> tuple[float, float] | None:
    """Rough (yaw, pitch) in degrees from 5 keypoints, for records without a pose.

    A head turned by θ shifts the nose tip sideways by about depth·sin θ; the nose protrudes
    roughly half the inter-ocular distance, so yaw ≈ asin(nose offset / half eye distance).
    Pitch likewise moves the nose between the eye and mouth lines: on a frontal face it sits
    half-way (ArcFace template: 0.50), so pitch ≈ asin(2·(t − 0.5)) with t its relative height.
    """
    up = _upright(kps)
    if up is None:
        return None
    pts, eye_dist = up
    axis_x = (pts[3, 0] + pts[4, 0]) / 4  # mean of eye midpoint (x = 0) and mouth midpoint
    yaw_ratio = (pts[2, 0] - axis_x) / (eye_dist / 2)
    mouth_y = (pts[3, 1] + pts[4, 1]) / 2
    t = pts[2, 1] / mouth_y
    yaw = math.degrees(math.asin(float(np.clip(yaw_ratio, -1.0, 1.0))))
    pitch = math.degrees(math.asin(float(np.clip(2 * (t - 0.5), -1.0, 1.0))))
    return yaw, pitch


def frontality_score(
    yaw: float | None, pitch: float | None, kps: np.ndarray | None = None
) -> float:
    """1 for a frontal face, falling linearly with the pose's elliptic distance from frontal.

    Reaches 0 at QUALITY_YAW_LIMIT of yaw or QUALITY_PITCH_LIMIT of pitch (or a mix of both).
    Without a pose the keypoint estimate stands in; without either the face scores 0.
    """
    if yaw is None or pitch is None:
        estimate = pose_from_keypoints(kps) if kps is not None else None
        if estimate is None:
            return 0.0
        yaw, pitch = estimate
    distance = math.hypot(
        yaw / settings.export().quality.yaw_limit, pitch / settings.export().quality.pitch_limit
    )
    return float(np.clip(1.0 - distance, 0.0, 1.0))


def symmetry_score(kps: np.ndarray, landmarks: np.ndarray | None = None) -> float:
    """1 when the face mirrors onto itself about the vertical axis through the nose tip.

    With 5 keypoints the left eye and mouth corner are mirrored onto their right partners;
    with 106 landmarks (no pairing needed) each mirrored point is matched to its nearest
    landmark. The mean error over the inter-ocular distance scores 0 at
    QUALITY_ASYMMETRY_LIMIT.
    """
    pts5 = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    up = _upright(pts5)
    if up is None:
        return 0.0
    pts, eye_dist = up
    nose_x = pts[2, 0]

    def mirror(p: np.ndarray) -> np.ndarray:
        out = np.array(p, dtype=np.float64, copy=True)
        out[..., 0] = 2 * nose_x - out[..., 0]
        return out

    if landmarks is not None and np.asarray(landmarks).size >= 2 * 10:
        lmk = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
        # Same frame as the keypoints: centred on the eye midpoint, eye line horizontal.
        left_eye, right_eye = pts5[0], pts5[1]
        angle = math.atan2(*(right_eye - left_eye)[::-1])
        cos, sin = math.cos(-angle), math.sin(-angle)
        lmk = (lmk - (left_eye + right_eye) / 2) @ np.array([[cos, -sin], [sin, cos]]).T
        mirrored = mirror(lmk)
        gaps = np.linalg.norm(mirrored[:, None, :] - lmk[None, :, :], axis=-1).min(axis=1)
        error = float(gaps.mean())
    else:
        error = float(
            (np.linalg.norm(mirror(pts[0]) - pts[1]) + np.linalg.norm(mirror(pts[3]) - pts[4])) / 2
        )
    return float(
        np.clip(1.0 - error / eye_dist / settings.export().quality.asymmetry_limit, 0.0, 1.0)
    )


def size_score(face_short: float) -> float:
    """Linear up to QUALITY_SIZE_FULL pixels of short edge, then saturated: more pixels than
    the swapper uses add nothing."""
    return float(np.clip(face_short / settings.export().quality.size_full, 0.0, 1.0))


def sharpness_score(blur: float) -> float:
    """The face's sharpness (inference/sharpness.py, the measure the quality gate uses) on a log
    scale between QUALITY_BLUR_LOW (0) and QUALITY_BLUR_HIGH (1): it spans orders of magnitude
    across photos, so a linear scale would saturate."""
    if not np.isfinite(blur) or blur <= settings.export().quality.blur_low:
        return 0.0
    low, high = (
        math.log(settings.export().quality.blur_low),
        math.log(settings.export().quality.blur_high),
    )
    return float(np.clip((math.log(blur) - low) / (high - low), 0.0, 1.0))


def composite(components: Mapping[str, float], weights: Mapping[str, float] | None = None) -> float:
    """Weighted mean of the components (weights need not sum to 1)."""
    weights = settings.export().quality.weights.as_dict() if weights is None else weights
    total = sum(weights[key] for key in COMPONENTS)
    if total <= 0:
        raise ValueError("quality weights must have a positive sum")
    return float(sum(weights[key] * components[key] for key in COMPONENTS) / total)


def quality_scores(row: FaceRow, weights: Mapping[str, float] | None = None) -> QualityScores:
    parts = {
        "frontality": frontality_score(row.yaw, row.pitch, row.kps),
        # SCRFD's score is already a probability in [0, 1].
        "det_score": float(np.clip(row.det_score, 0.0, 1.0)),
        "symmetry": symmetry_score(row.kps, row.landmark_2d_106),
        "size": size_score(row.face_short),
        "sharpness": sharpness_score(row.blur),
    }
    return QualityScores(**parts, composite=composite(parts, weights))
