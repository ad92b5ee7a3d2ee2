"""Which frames are sampled, and how a sampled frame travels to the inference service.

Frames are sampled on the video's own timeline at `sample_fps`: frame n is sampled when it is
the first of a new 1 / sample_fps interval, computed with integers so that the decode pass's
ffmpeg `select` filter and this module agree on every frame. Each sampled frame belongs to the
shot it falls in. Sampled frames arrive at most `send_max_side` a side (ffmpeg scales them) and
travel JPEG-encoded in memory; nothing is written to disk. Faces smaller than the quality gate
keeps are of no use, so the detector looks at each frame at the scale the gate's smallest face
needs (`detect_size`), not at the size it uses for photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from facesets.common import settings
from facesets.export.video.probe import VideoError
from facesets.export.video.shots import Shot, shots_of


@dataclass(frozen=True)
class Sample:
    frame: int
    time_s: float
    shot: int


@dataclass(frozen=True)
class VideoStream:
    fps: float
    frame_count: int
    width: int
    height: int


def open_stream(path: Path) -> VideoStream:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("unreadable: OpenCV cannot open it as a video")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if fps <= 0 or count <= 0 or width <= 0:
        raise VideoError("unreadable: no frame rate or frame count in the video stream")
    return VideoStream(fps, count, width, height)


def sampling_ratio(fps: float, sample_fps: float) -> Fraction:
    """Sampled frames per frame as a fraction (a 29.97 fps stream's rate is 30000/1001)."""
    rate = Fraction(fps).limit_denominator(1001)
    return min(Fraction(1), Fraction(sample_fps).limit_denominator(1000) / rate)


def sample_grid(frame_count: int, fps: float, sample_fps: float) -> list[int]:
    """The sampled frame numbers of a video of frame_count frames, ascending."""
    r = sampling_ratio(fps, sample_fps)
    a, b = r.numerator, r.denominator
    return [n for n in range(frame_count) if n == 0 or (n * a) // b > ((n - 1) * a) // b]


def select_expression(fps: float, sample_fps: float) -> str:
    """ffmpeg's `select` expression for `sample_grid`'s frames. Exact in ffmpeg's doubles:
    n * a is an integer far below 2**53, and a quotient that is not whole stays 1 / b away."""
    r = sampling_ratio(fps, sample_fps)
    a, b = r.numerator, r.denominator
    return f"eq(n\\,0)+gt(floor(n*{a}/{b})\\,floor((n-1)*{a}/{b}))"


def samples_in_shots(grid: list[int], shots: list[Shot], fps: float) -> list[Sample]:
    return [
        Sample(frame, frame / fps, shot)
        for frame, shot in zip(grid, shots_of(grid, shots), strict=True)
    ]


def send_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) of a sampled frame as sent: at most max_side a side, even, the aspect kept."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def detect_size(sent_long: int, scale: float, min_face_short: float) -> int:
    """The detector's long side for frames sent `sent_long` px long (`scale` source px each):
    the smallest face the gate keeps (`min_face_short` source px) spans VIDEO_DETECT_FACE_PX
    of the detector's input. 0 (the service's own size) when the gate keeps every size."""
    if min_face_short <= 0:
        return 0
    face_sent = min_face_short / scale
    side = int(np.ceil(sent_long * settings.export().video.detect_face_px / face_sent / 32)) * 32
    return max(settings.export().video.detect_min_size, side)


def encode_for_inference(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a sampled frame."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VideoError("a sampled frame could not be encoded")
    return data.tobytes()
