"""Shot boundaries with PySceneDetect's content detector, on its downscaled detection pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scenedetect import ContentDetector, SceneManager, open_video


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


def detect_shots(
    path: Path, fps: float, frame_count: int, threshold: float, min_shot_s: float
) -> list[Shot]:
    """The shots of a video; one shot spanning it when the detector finds no cut."""
    video = open_video(str(path))
    manager = SceneManager()
    manager.auto_downscale = True  # frames shrunk to ~256 px wide before the comparison
    manager.add_detector(
        ContentDetector(threshold=threshold, min_scene_len=max(1, round(min_shot_s * fps)))
    )
    manager.detect_scenes(video)
    cuts = sorted({int(tc.frame_num) for tc in manager.get_cut_list()} - {0})
    bounds = [0, *(c for c in cuts if 0 < c < frame_count), frame_count]
    spans = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    return [Shot(i, a, b, a / fps, b / fps) for i, (a, b) in enumerate(spans)]
