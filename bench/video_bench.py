"""Video planning throughput: video seconds processed per wall-clock second.

A generated 1080p H.264 video (LFW stills panning over coloured backgrounds, a hard cut every
10 s; at least 2 minutes, 20 s with --quick) is planned by `facesets video plan` (shots,
frames sampled at 2 fps, the inference service, tracks and segments) and by a naive loop in the
same run: OpenCV reading every frame and `FaceAnalysis.get` on every 15th (2 fps at 30 fps).
Both run on the CPU with the mini pack, services started and warm before the clock starts.
Target: >= 2x the naive loop.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facesets.contract.video import VideoPlanRequest

MODEL_PACK = "facepack-mini"
WIDTH, HEIGHT, FPS = 1920, 1080, 30
SHOT_S = 10


def build_video(path: Path, lfw: Path, seconds: int) -> None:
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:40]
    command = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
        "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-", "-c:v", "libx264",
        "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    encoder = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert encoder.stdin is not None
    rng = np.random.default_rng(0)
    for shot in range(seconds // SHOT_S):
        photo = sorted(people[shot % len(people)].glob("*.jpg"))[0]
        still = cv2.resize(cv2.imread(str(photo)), (600, 600), interpolation=cv2.INTER_CUBIC)
        background = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        background[:] = rng.integers(20, 230, 3)
        for i in range(SHOT_S * FPS):
            frame = background.copy()
            x = 300 + int(600 * i / (SHOT_S * FPS))
            frame[240:840, x : x + 600] = still
            encoder.stdin.write(frame.tobytes())
    encoder.stdin.close()
    assert encoder.wait() == 0


def naive_loop(video: Path, model_root: Path) -> tuple[float, int]:
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name=MODEL_PACK, root=str(model_root), providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    faces = 0
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(video))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % 15 == 0:
            faces += len(app.get(frame))
        index += 1
    capture.release()
    return time.perf_counter() - started, faces


def facesets_plan(video: Path, model_root: Path) -> tuple[float, dict]:
    from facesets.orchestrator import stages
    from facesets.orchestrator.connect import ServiceOptions, Services

    args = argparse.Namespace(
        model_root=str(model_root),
        model_pack=MODEL_PACK,
        providers="cpu",
        inference=None,
        export=None,
        token_file=None,
        tls_ca=None,
    )
    with tempfile.TemporaryDirectory() as tmp:
        job = VideoPlanRequest(video, Path(tmp) / "out")
        # the services are confined to the job's own folders, as the CLI starts them
        with Services(ServiceOptions.from_args(args), job.roots()) as services:
            services.inference().info()  # both started and warm before the clock starts
            services.export().info()
            started = time.perf_counter()
            summary = stages.video_plan(services, job, show_progress=False)
            return time.perf_counter() - started, summary.values


def gate_edge_faces(shared: Path, people: int = 80) -> dict:
    """What detecting at the video `detect_size` costs in quality, on the faces that matter
    most: LFW faces at the gate's edge (about 80 px in a 1080p frame, sent at 1280 px).

    Each face is embedded after detection at the service's own size (640) and at the video
    detect size; the two embeddings' cosine is set beside the cosine between the full-size
    detection and the same detection on the frame shifted by 2 and 3 pixels (the jitter any
    detection has)."""
    from facesets.contract import defaults
    from facesets.export.video.frames import detect_size
    from facesets.inference.models import load_pack

    pack = load_pack(shared, MODEL_PACK, ["CPUExecutionProvider"], 640, 0.5, 1)
    video_size = detect_size(1280, WIDTH / 1280, defaults.VIDEO_MIN_FACE_SHORT)
    assert pack.recognizer is not None
    rng = np.random.default_rng(1)
    lfw = shared / "data" / "lfw"
    folders = sorted(p for p in lfw.iterdir() if p.is_dir())[: people * 10 : 10]

    def embedding(image: np.ndarray, size: int) -> np.ndarray | None:
        found = pack.detector.detect(image, size)
        if not found:
            return None
        best = max(found, key=lambda d: d.score)
        return pack.recognizer.embed([pack.recognizer.align(image, best.kps)], 1)[0]

    shifted_cos, video_cos, missed = [], [], 0
    for folder in folders:
        photo = cv2.imread(str(sorted(folder.glob("*.jpg"))[0]))
        still = cv2.resize(photo, (200, 200), interpolation=cv2.INTER_AREA)
        frame = np.full((HEIGHT, WIDTH, 3), rng.integers(20, 230, 3), np.uint8)
        x, y = rng.integers(100, WIDTH - 300), rng.integers(100, HEIGHT - 280)
        frame[y : y + 200, x : x + 200] = still
        moved = np.roll(frame, (2, 3), axis=(0, 1))
        sent, moved = (
            cv2.resize(f, (1280, 720), interpolation=cv2.INTER_AREA) for f in (frame, moved)
        )
        full, shifted = embedding(sent, 0), embedding(moved, 0)
        video = embedding(sent, video_size)
        if video is None:
            missed += 1
        if full is not None and shifted is not None:
            shifted_cos.append(float(full @ shifted))
        if full is not None and video is not None:
            video_cos.append(float(full @ video))
    return {
        "faces": len(folders),
        "detect_size": video_size,
        "missed_at_detect_size": missed,
        "cos_detect_size_vs_full": round(float(np.mean(video_cos)), 4),
        "cos_2px_shift_vs_full": round(float(np.mean(shifted_cos)), 4),
    }


def main(shared: Path, quick: bool, keep: Path | None = None) -> dict:
    seconds = 20 if quick else 130
    with tempfile.TemporaryDirectory() as tmp:
        video = keep or Path(tmp) / "bench_1080p.mp4"
        if not video.is_file():  # --keep reuses a video built by an earlier run
            started = time.perf_counter()
            build_video(video, shared / "data" / "lfw", seconds)
            print(f"built {seconds} s of 1080p H.264 in {time.perf_counter() - started:.0f} s")
        naive_s, naive_faces = naive_loop(video, shared)
        ours_s, summary = facesets_plan(video, shared)
    result = {
        "video_seconds": seconds,
        "naive_seconds": round(naive_s, 2),
        "naive_video_s_per_s": round(seconds / naive_s, 2),
        "naive_faces": naive_faces,
        "facesets_seconds": round(ours_s, 2),
        "facesets_video_s_per_s": round(seconds / ours_s, 2),
        "facesets_faces": summary["faces"],
        "facesets_shots": summary["shots"],
        "facesets_segments": summary["segments"],
        "speedup": round(naive_s / ours_s, 2),
        "target": ">= 2x",
        "gate_edge_faces": gate_edge_faces(shared, 20 if quick else 80),
    }
    for key, value in result.items():
        print(f"{key:<26} {value}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--keep", type=Path, help="build the video here once and reuse it on later runs"
    )
    options = parser.parse_args()
    main(options.shared.resolve(), options.quick, options.keep)
    sys.exit(0)
