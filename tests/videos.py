"""Test videos with known shots and faces: stills of LFW people moved over coloured
backgrounds, frames drawn with OpenCV and piped to ffmpeg (H.264, a keyframe every second)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 480, 360, 10


@dataclass(frozen=True)
class ShotSpec:
    seconds: float
    background: tuple[int, int, int]  # BGR; neighbouring shots differ, so each cut is hard
    face: Path | None = None  # an LFW still, or no face
    face_size: int = 300  # side of the still on screen (LFW's 250 px scaled)
    then: Path | None = None  # another person cross-fades in half-way (same shot)
    motion: str = "zoom"  # "zoom", "pan", or anything else for a still face
    beside: Path | None = None  # a second person in the same shot, the two side by side


def _still(path: Path, size: int) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)


def _place(frame: np.ndarray, still: np.ndarray, cx: float, cy: float) -> None:
    h, w = still.shape[:2]
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(WIDTH, x0 + w), min(HEIGHT, y0 + h)
    frame[fy0:fy1, fx0:fx1] = still[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]


def _frames(spec: ShotSpec) -> list[np.ndarray]:
    count = int(round(spec.seconds * FPS))
    out = []
    for i in range(count):
        progress = i / max(1, count - 1)
        frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        frame[:] = spec.background
        # A little texture that moves, so frames within a shot are not identical.
        cv2.circle(frame, (int(40 + 400 * progress), 30), 12, (255, 255, 255), -1)
        if spec.face is not None:
            size = spec.face_size
            if spec.motion == "zoom":
                size = int(spec.face_size * (1.0 + 0.15 * progress))
            cx = WIDTH / 2 + (40 * (progress - 0.5) if spec.motion == "pan" else 0)
            if spec.beside is not None:
                cx -= WIDTH / 4
                _place(frame, _still(spec.beside, size), cx + WIDTH / 2, HEIGHT / 2)
            still = _still(spec.face, size)
            if spec.then is not None:
                other = _still(spec.then, size)
                alpha = float(np.clip((progress - 0.45) / 0.1, 0.0, 1.0))  # a quick cross-fade
                still = cv2.addWeighted(still, 1 - alpha, other, alpha, 0)
            _place(frame, still, cx, HEIGHT / 2)
        out.append(frame)
    return out


def make_video(
    path: Path,
    shots: list[ShotSpec],
    keyframe_s: float = 1.0,
    keyframes_at_cuts: bool = True,
    index_first: bool = False,
    preset: str = "ultrafast",
) -> list[int]:
    """Write the video; return the first frame of each shot after the first (the cuts).
    Presets slower than ultrafast use B-frames (frames shown before later-decoded ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
        "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-", "-c:v", "libx264",
        "-preset", preset, "-g", str(int(FPS * keyframe_s)), "-pix_fmt", "yuv420p",
        *([] if keyframes_at_cuts else ["-sc_threshold", "0"]),
        *(["-movflags", "+faststart"] if index_first else []), str(path),
    ]  # fmt: skip
    encoder = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert encoder.stdin is not None
    cuts, frame_no = [], 0
    for spec in shots:
        if frame_no:
            cuts.append(frame_no)
        for frame in _frames(spec):
            encoder.stdin.write(frame.tobytes())
            frame_no += 1
    encoder.stdin.close()
    assert encoder.wait() == 0
    return cuts


def make_audio_only(path: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "sine=frequency=440:duration=2", "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
