"""Shot boundaries with PySceneDetect's content detector, fed small frames as they decode.

The detector compares consecutive frames about 256 px wide (PySceneDetect's own detection
width). The decode pass (`decode.py`) has ffmpeg shrink every frame to that size, so the
detector never sees, and nothing converts, a full-size frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scenedetect import ContentDetector, FrameTimecode

from facesets.common import settings


@dataclass(frozen=True)
class Shot:
    index: int
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "index": self.index,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_s": self.start_s,
            "end_s": self.end_s,
        }


def detection_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) of the frames the detector compares: at most the detection width, even sides."""
    small_w = max(2, min(width, settings.export().video.shot_detect_width) // 2 * 2)
    return small_w, max(2, round(height * small_w / width / 2) * 2)


class ShotDetector:
    """Consecutive frames in, the video's shots out once the last frame is in."""

    def __init__(self, fps: float, threshold: float, min_shot_s: float) -> None:
        self.fps = fps
        self._detector = ContentDetector(
            threshold=threshold, min_scene_len=max(1, round(min_shot_s * fps))
        )
        self._cuts: set[int] = set()
        self.frames = 0  # frames seen so far

    def feed(self, image: np.ndarray) -> None:
        found = self._detector.process_frame(FrameTimecode(self.frames, self.fps), image)
        self._cuts.update(tc.frame_num for tc in found)
        self.frames += 1

    def shots(self, frame_count: int) -> list[Shot]:
        """The shots of a video of frame_count frames; one shot when no cut was found."""
        if self.frames:
            last = FrameTimecode(self.frames - 1, self.fps)
            self._cuts.update(tc.frame_num for tc in self._detector.post_process(last))
        bounds = [0, *sorted(c for c in self._cuts if 0 < c < frame_count), frame_count]
        spans = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
        fps = self.fps
        return [Shot(i, a, b, a / fps, b / fps) for i, (a, b) in enumerate(spans)]


def shots_of(frames: list[int], shots: list[Shot]) -> list[int]:
    """The index of the shot holding each frame (shots are sorted and cover the video)."""
    starts = np.array([s.start_frame for s in shots])
    at = np.maximum(np.searchsorted(starts, frames, side="right") - 1, 0)
    return [shots[i].index for i in at]
