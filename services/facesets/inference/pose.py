"""Head pose from the five detector keypoints, for packs without a 3D landmark model."""

from __future__ import annotations

import cv2
import numpy as np

# A generic adult face (millimetres, x right, y down, z towards the camera is negative):
# left eye, right eye, nose tip, left mouth corner, right mouth corner, as SCRFD orders them.
_MODEL_POINTS = np.array(
    [
        [-31.0, -32.0, -24.0],
        [31.0, -32.0, -24.0],
        [0.0, 0.0, 0.0],
        [-25.0, 35.0, -20.0],
        [25.0, 35.0, -20.0],
    ],
    dtype=np.float64,
)


def pose_from_keypoints(kps: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees by solvePnP against the generic face; 0 yaw is frontal."""
    height, width = image_size
    focal = float(max(width, height))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(
        _MODEL_POINTS, kps.astype(np.float64), camera, None, flags=cv2.SOLVEPNP_EPNP
    )
    if not ok:
        return 0.0, 0.0, 0.0
    rotation, _ = cv2.Rodrigues(rvec)
    # Euler angles of R = Rz(roll) * Ry(yaw) * Rx(pitch).
    yaw = np.degrees(np.arcsin(-np.clip(rotation[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    return float(yaw), float(_wrap(pitch)), float(roll)


def _wrap(angle: float) -> float:
    """Pitch near ±180 means the model faces the camera upside down in this convention."""
    if angle > 90:
        return angle - 180
    if angle < -90:
        return angle + 180
    return angle
