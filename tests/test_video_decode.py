"""The video decode pass: one ffmpeg process feeds the shot detector every frame and the
inference stream exactly the sampled frames, on real H.264 files whose frames show their own
frame number."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from facesets.export.video import frames as frame_io
from facesets.export.video.decode import DecodePass
from facesets.export.video.probe import VideoError
from facesets.export.video.shots import ShotDetector

W, H = 160, 96
CUT = 70  # the background changes colour family here: a hard cut
LONG = 1000


def numbered_frame(n: int) -> np.ndarray:
    """A left stripe shows the frame number in two uniform channels, changing a little from
    frame to frame (blue counts up, then down); the rest shows the shot's colour."""
    frame = np.zeros((H, W, 3), np.uint8)
    block, step = divmod(n, 32)
    frame[:, : W // 4, 0] = (step if block % 2 == 0 else 31 - step) * 8
    frame[:, : W // 4, 1] = block * 8
    frame[:, W // 4 :] = (30, 200, 40) if n < CUT else (220, 40, 200)
    return frame


def frame_number(image: np.ndarray) -> int:
    stripe = image[:, : image.shape[1] // 4 - 2].reshape(-1, 3).astype(np.float64).mean(axis=0)
    block, blue = int(round(stripe[1] / 8)), int(round(stripe[0] / 8))
    return 32 * block + (blue if block % 2 == 0 else 31 - blue)


def make_numbered_video(path: Path, count: int, rate: str) -> None:
    command = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
        "-s", f"{W}x{H}", "-r", rate, "-i", "-", "-c:v", "libx264", "-qp", "0",
        "-pix_fmt", "yuv444p", str(path),
    ]  # fmt: skip
    data = b"".join(numbered_frame(n).tobytes() for n in range(count))
    subprocess.run(command, input=data, check=True)


@pytest.fixture(scope="module")
def ntsc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("decode") / "ntsc.mp4"
    make_numbered_video(path, 150, "30000/1001")
    return path


@pytest.fixture(scope="module")
def long_ntsc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 frames (the most the numbering shows): long enough that a decoder still running
    cannot reach the end in the moment a consumer takes to stop, even on a loaded machine
    (the two-process layout decodes the detector's frames apart from the sampled ones)."""
    path = tmp_path_factory.mktemp("decode") / "ntsc_long.mp4"
    make_numbered_video(path, LONG, "30000/1001")
    return path


def decode_pass(
    path: Path, sample_fps: float = 2.0, one_process: bool = True
) -> tuple[DecodePass, list[int]]:
    stream = frame_io.open_stream(path)
    detector = ShotDetector(stream.fps, threshold=27.0, min_shot_s=0.5)
    grid = frame_io.sample_grid(stream.frame_count, stream.fps, sample_fps)
    decoding = DecodePass(path, stream, sample_fps, 64, detector)
    decoding.one_process = one_process
    return decoding, grid


# One ffmpeg writing both streams (POSIX), or two ffmpeg processes (how Windows runs it).
LAYOUTS = pytest.mark.parametrize("one_process", [True, False], ids=["one-ffmpeg", "two-ffmpeg"])


@LAYOUTS
def test_the_pass_yields_exactly_the_sampled_frames_at_a_fractional_rate(
    ntsc: Path, one_process: bool
) -> None:
    decoding, grid = decode_pass(ntsc, sample_fps=7.0, one_process=one_process)
    # 7 samples a second at 29.97 fps: steps of 4 and 5 frames, from frame 0
    assert grid[:3] == [0, 5, 9] and len(grid) == 35
    assert set(np.diff(grid)) == {4, 5}
    got = list(decoding.frames(grid, set(grid)))
    assert [frame for frame, _ in got] == grid
    assert [frame_number(image) for _, image in got] == grid  # the pixels are those frames
    assert got[0][1].shape == (38, 64, 3)  # shrunk to the send size, aspect kept
    assert decoding.scale == pytest.approx(W / 64)


@LAYOUTS
def test_the_detector_sees_every_frame_and_finds_the_cut(ntsc: Path, one_process: bool) -> None:
    decoding, grid = decode_pass(ntsc, one_process=one_process)
    wanted = set(grid[3:5])  # a resumed video: most frames already logged
    assert [frame for frame, _ in decoding.frames(grid, wanted)] == grid[3:5]
    assert decoding.decoded == 150
    shots = decoding.detector.shots(150)
    assert [(s.start_frame, s.end_frame) for s in shots] == [(0, CUT), (CUT, 150)]
    samples = frame_io.samples_in_shots(grid, shots, decoding.stream.fps)
    assert all((s.frame >= CUT) == (s.shot == 1) for s in samples)


@LAYOUTS
def test_a_consumer_that_stops_early_ends_the_decoder(long_ntsc: Path, one_process: bool) -> None:
    decoding, grid = decode_pass(long_ntsc, sample_fps=10.0, one_process=one_process)
    frames = decoding.frames(grid, set(grid))
    assert next(frames)[0] == 0
    started = time.monotonic()
    frames.close()  # as when the inference stream fails
    assert time.monotonic() - started < 10
    assert decoding.decoded < LONG


def test_a_file_ffmpeg_cannot_decode_is_unreadable(ntsc: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    data = bytearray(ntsc.read_bytes())
    start, end = data.find(b"mdat") + 8, data.rfind(b"moov") - 4  # the coded frames ...
    noise = np.random.default_rng(0).integers(0, 256, end - start, np.uint8)
    data[start:end] = noise.tobytes()  # ... become noise; the index stays, so it opens
    broken.write_bytes(bytes(data))
    decoding, grid = decode_pass(broken)
    with pytest.raises(VideoError, match="^(unreadable|truncated)"):
        list(decoding.frames(grid, set(grid)))
