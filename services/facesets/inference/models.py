"""The model pack: ONNX files routed by what their graphs declare (insightface.model_zoo)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog
from insightface.app.common import Face
from insightface.model_zoo import model_zoo
from insightface.utils import face_align

from facesets.inference.session import providers_in_use, session_options

log = structlog.get_logger(__name__)


class ModelPackError(RuntimeError):
    """The model pack is missing or incomplete."""


@dataclass
class Detection:
    bbox: np.ndarray  # (4,) x1, y1, x2, y2
    kps: np.ndarray  # (5, 2)
    score: float


class Detector:
    """SCRFD (or RetinaFace) face detector at a fixed square input size."""

    def __init__(self, model: Any, input_size: int, threshold: float) -> None:
        self.model = model
        self.input_size = input_size
        model.prepare(ctx_id=0, input_size=(input_size, input_size), det_thresh=threshold)

    def long_side(self, wanted: int = 0) -> int:
        """The input's long side: `wanted` rounded up to a multiple of 32, at most the
        detector's own size (which 0 means)."""
        if wanted <= 0:
            return self.input_size
        return min(self.input_size, -(-wanted // 32) * 32)

    def input_for(self, height: int, width: int, wanted: int = 0) -> tuple[int, int]:
        """(w, h) fitting the image's aspect, long side `long_side` of `wanted` (or of the photo),
        multiples of 32.

        A square input would spend a quarter of a 4:3 photo's compute on letterbox padding;
        the faces found are the same. Without `wanted`, a photo smaller than the detector's
        size is detected at its own size (rounded up to 32), never enlarged, which would cost
        up to 6x the work: on 300 LFW photos (250 px, mini pack) the own size found 344 faces
        against 338 at 640, and detection took 16 ms a photo against 102
        (bench/embed_bench.py's large photos are all above 640 px: its figures are the same).
        """
        own = max(height, width)
        scale = self.long_side(wanted if wanted > 0 else own) / own
        return (
            max(32, int(np.ceil(width * scale / 32)) * 32),
            max(32, int(np.ceil(height * scale / 32)) * 32),
        )

    def detect(self, bgr: np.ndarray, wanted: int = 0) -> list[Detection]:
        height, width = bgr.shape[:2]
        size = self.input_for(height, width, wanted)
        boxes, kpss = self.model.detect(bgr, input_size=size)
        found = []
        for i, box in enumerate(boxes):
            kps = kpss[i] if kpss is not None else np.zeros((5, 2), np.float32)
            found.append(
                Detection(box[:4].astype(np.float32), kps.astype(np.float32), float(box[4]))
            )
        return found


class Recognizer:
    """ArcFace-style recognizer; batches faces when the graph's batch axis is dynamic."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.input_size = int(model.input_size[0])
        batch_axis = model.input_shape[0]
        self.dynamic_batch = not isinstance(batch_axis, int) or batch_axis <= 0
        self.dim = int(model.session.get_outputs()[0].shape[-1])

    def align(self, bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        return face_align.norm_crop(bgr, landmark=kps, image_size=self.input_size)

    def embed(self, crops: Sequence[np.ndarray], batch: int) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        step = batch if self.dynamic_batch else 1
        parts = [self.model.get_feat(list(crops[i : i + step])) for i in range(0, len(crops), step)]
        features = np.concatenate(parts, axis=0).astype(np.float32)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.maximum(norms, 1e-12)


class Landmarker:
    """2d106 or 3d68 landmark model; the 3d68 one also yields head pose."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.task: str = model.taskname

    def run(self, bgr: np.ndarray, bbox: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        face = Face(bbox=bbox)
        self.model.get(bgr, face)
        pose = face.get("pose")
        return np.asarray(face[self.task], np.float32), None if pose is None else np.asarray(pose)


@dataclass
class ModelPack:
    name: str
    folder: Path
    detector: Detector
    recognizer: Recognizer | None
    landmark_2d_106: Landmarker | None = None
    landmark_3d_68: Landmarker | None = None
    providers: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    # Whether the sessions run on a GPU (DirectML, CUDA) rather than the CPU.
    accelerated: bool = False
    # GPU sessions (DirectML above all) must not run from several threads at once; CPU
    # sessions may, each call on its own thread.
    model_calls: AbstractContextManager[Any] = field(default_factory=contextlib.nullcontext)


def pack_folder(model_root: Path, pack: str) -> Path:
    """ROOT/models/PACK, fetched through insightface for its own packs where the network allows."""
    root = Path(model_root).expanduser()
    folder = root / "models" / pack
    if folder.is_dir() and any(folder.glob("*.onnx")):
        return folder
    try:
        from insightface.utils import ensure_available

        return Path(ensure_available("models", pack, root=str(root)))
    except Exception as error:  # network refused, unknown pack, partial download ...
        raise ModelPackError(
            f"model pack '{pack}' not found: put its .onnx files in {folder} "
            f"(InsightFace fetches '{pack}' there on first use when the network allows; "
            f"fetching failed: {error})"
        ) from error


def load_pack(
    model_root: Path,
    pack: str,
    providers: Sequence[str],
    det_size: int,
    det_threshold: float,
    intra_op_threads: int = 0,
) -> ModelPack:
    folder = pack_folder(model_root, pack)
    options = session_options(providers, intra_op_threads)
    detector: Detector | None = None
    recognizer: Recognizer | None = None
    landmarks: dict[str, Landmarker] = {}
    files: dict[str, str] = {}
    used: list[str] = []
    for onnx in sorted(folder.glob("*.onnx")):
        model = model_zoo.get_model(str(onnx), providers=list(providers), sess_options=options)
        if model is None:
            log.info("model skipped: its graph matches no known task", file=onnx.name)
            continue
        task = model.taskname
        files[task] = onnx.name
        used = used or providers_in_use(model.session)
        if task == "detection" and detector is None:
            detector = Detector(model, det_size, det_threshold)
        elif task == "recognition" and recognizer is None:
            recognizer = Recognizer(model)
        elif task in ("landmark_2d_106", "landmark_3d_68"):
            model.prepare(ctx_id=0)
            landmarks[task] = Landmarker(model)
        else:
            log.info("model not used", task=task, file=onnx.name)
    if detector is None:
        raise ModelPackError(f"model pack '{pack}' in {folder} has no face detector")
    log.info("model pack loaded", pack=pack, folder=str(folder), models=files, providers=used)
    accelerated = any(p != "CPUExecutionProvider" for p in used)
    return ModelPack(
        accelerated=accelerated,
        model_calls=threading.Lock() if accelerated else contextlib.nullcontext(),
        name=pack,
        folder=folder,
        detector=detector,
        recognizer=recognizer,
        landmark_2d_106=landmarks.get("landmark_2d_106"),
        landmark_3d_68=landmarks.get("landmark_3d_68"),
        providers=used,
        files=files,
    )


def laplacian_blur(bgr: np.ndarray, bbox: np.ndarray) -> float:
    """Variance of the Laplacian over the face box at the image's own resolution.

    The measure of earlier versions (BLUR_MEASURE_UNSPECIFIED), kept for comparison: it falls
    with the face's size. Faces are measured with `sharpness.face_sharpness`.
    """
    h, w = bgr.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in bbox)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 3 or y2 - y1 < 3:
        return 0.0
    gray = cv2.cvtColor(bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    # The 3x3 Laplacian of 8-bit pixels fits 16 bits exactly: same value as a float64 one.
    _, deviation = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_16S))
    return float(deviation[0, 0] ** 2)
