"""Frames sampled within each shot, decoded only as far as they are needed.

One sequential pass with OpenCV: `grab()` moves past a frame without converting it to BGR,
`retrieve()` converts only the sampled ones, and the pass stops after the last frame still to
infer (frames already in the frame log are skipped, a resumed video stops early). Sampled
frames are shrunk to at most `send_max_side` a side and JPEG-encoded in memory; nothing is
written to disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facesets.export.video.probe import VideoError
from facesets.export.video.shots import Shot


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


def sample_plan(shots: list[Shot], fps: float, sample_fps: float) -> list[Sample]:
    """Frames at `sample_fps` from each shot's first frame to its last."""
    step = fps / sample_fps
    samples: list[Sample] = []
    for shot in shots:
        k = 0
        while (frame := shot.start_frame + int(round(k * step))) < shot.end_frame:
            samples.append(Sample(frame, frame / fps, shot.index))
            k += 1
    return samples


def read_samples(
    path: Path, wanted: list[Sample], ends_near: int | None = None
) -> Iterator[tuple[Sample, np.ndarray]]:
    """The wanted frames (BGR) in order; VideoError when the video ends before them.

    Containers that only estimate their frame count may end a little early: a stream that ends
    at or past `ends_near` (a frame index) is taken as complete."""
    if not wanted:
        return
    capture = cv2.VideoCapture(str(path))
    try:
        todo = iter(sorted(wanted, key=lambda s: s.frame))
        target = next(todo)
        frame = 0
        while True:
            if not capture.grab():
                if ends_near is not None and frame >= ends_near:
                    return
                raise VideoError(
                    f"truncated: the video stream ended at frame {frame}, "
                    f"before sampled frame {target.frame}"
                )
            if frame == target.frame:
                ok, image = capture.retrieve()
                if not ok or image is None:
                    raise VideoError(f"corrupt: frame {frame} did not decode")
                yield target, image
                nxt = next(todo, None)
                if nxt is None:
                    return
                target = nxt
            frame += 1
    finally:
        capture.release()


def encode_for_inference(image: np.ndarray, max_side: int, quality: int) -> tuple[bytes, float]:
    """JPEG bytes of the frame shrunk to max_side, and the factor that maps boxes back."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        image = cv2.resize(
            image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
        )
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VideoError("a sampled frame could not be encoded")
    return data.tobytes(), 1.0 / scale
