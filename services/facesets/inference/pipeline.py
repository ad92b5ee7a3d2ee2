"""Streams of images through decode → detect → align → recognise, with bounded queues.

Decoding runs in a thread pool ahead of the models; a semaphore bounds the images in flight,
so a fast client is held back by gRPC flow control rather than by memory.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

import cv2
import numpy as np
import structlog

from facesets.common import settings
from facesets.common.decode import DecodeBudget, Decoded, DecodeError, decode, read_source
from facesets.common.roots import Roots
from facesets.common.settings import InferenceSettings
from facesets.inference.models import Detection, ModelPack
from facesets.inference.pose import pose_from_keypoints
from facesets.inference.sharpness import MEASURE, face_sharpness
from facesets.v1 import common_pb2

log = structlog.get_logger(__name__)


class Mode(Enum):
    COUNT = "count"  # detection only, no per-face extras
    DETECT = "detect"  # faces with landmarks and pose, no embeddings
    EMBED = "embed"  # faces with embeddings


@dataclass
class Pose:
    yaw: float
    pitch: float
    roll: float
    source: int  # a facesets.v1.PoseSource value


@dataclass
class FaceResult:
    """One detected face, in full-image pixels."""

    det_score: float
    bbox: list[float] = field(default_factory=list)
    kps: list[float] = field(default_factory=list)  # 5 points, x y interleaved
    face_short: float = 0.0
    blur: float = 0.0
    blur_measure: int = 0  # a facesets.v1.BlurMeasure value: which measure `blur` holds
    landmark_2d_106: list[float] = field(default_factory=list)
    landmark_3d_68: list[float] = field(default_factory=list)
    pose: Pose | None = None
    embedding: np.ndarray | None = None  # float32, unit length


@dataclass
class ImageFailure:
    reason: int  # a facesets.v1.ErrorReason value
    message: str


@dataclass
class Outcome:
    """One image's result: faces, or an error."""

    id: str
    width: int = 0
    height: int = 0
    capture_time: str = ""
    faces: list[FaceResult] = field(default_factory=list)
    error: ImageFailure | None = None


@dataclass
class _Prepared:
    """An image after the workers' part: its outcome so far and the crops to recognise."""

    outcome: Outcome
    crops: list[np.ndarray] = field(default_factory=list)


def _attach(outcome: Outcome, embeddings: np.ndarray) -> None:
    """Embeddings, in order, onto the image's first faces (those that were aligned)."""
    for face, embedding in zip(outcome.faces, embeddings, strict=False):
        face.embedding = np.ascontiguousarray(embedding, dtype="<f4")


# --- batching policies ----------------------------------------------------------------------
@dataclass(frozen=True)
class PerImage:
    """On CPU: each worker embeds its own image's faces, so recognition is spread over every
    core instead of queueing on one thread; an image's result goes out as soon as it is ready."""

    embeds_on_worker: bool = True

    def batch_full(self, faces: int, more_waiting: bool) -> bool:
        return True


@dataclass(frozen=True)
class AcrossImages:
    """On an accelerator with a dynamic-batch recognizer: the stream's own thread embeds crops
    gathered across every image already submitted (one large call keeps the device busy)."""

    batch_faces: int
    embeds_on_worker: bool = False

    def batch_full(self, faces: int, more_waiting: bool) -> bool:
        return faces >= self.batch_faces or not more_waiting


BatchPolicy = PerImage | AcrossImages


class RecognitionBatcher:
    """The images submitted to the workers, in order, cut into recognition batches.

    It owns the queue between the request reader (which puts each image's future) and the
    stream's thread (which takes batches), so the policy can ask whether another image is
    already waiting without looking inside a queue.Queue.
    """

    def __init__(self, pack: ModelPack, policy: BatchPolicy, recognition_batch: int) -> None:
        self.pack = pack
        self.policy = policy
        self.recognition_batch = recognition_batch
        self._items: deque[Future[_Prepared]] = deque()
        self._closed = False
        self._changed = threading.Condition()

    # --- the reader's side ---------------------------------------------------------------
    def put(self, item: Future[_Prepared]) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify()

    def close(self) -> None:
        """No more images: the batches end once the queued ones are out."""
        with self._changed:
            self._closed = True
            self._changed.notify()

    # --- the stream's side ---------------------------------------------------------------
    def _next(self) -> Future[_Prepared] | None:
        with self._changed:
            self._changed.wait_for(lambda: self._items or self._closed)
            return self._items.popleft() if self._items else None

    def _more_waiting(self) -> bool:
        with self._changed:
            return bool(self._items)

    def batches(self) -> Iterator[list[_Prepared]]:
        """Prepared images, grouped as the policy says, each group embedded."""
        batch: list[_Prepared] = []
        while (future := self._next()) is not None:
            batch.append(future.result())
            faces = sum(len(p.crops) for p in batch)
            if self.policy.batch_full(faces, self._more_waiting()):
                self._embed(batch)
                yield batch
                batch = []
        if batch:
            self._embed(batch)
            yield batch

    def _embed(self, batch: list[_Prepared]) -> None:
        crops = [crop for prepared in batch for crop in prepared.crops]
        recognizer = self.pack.recognizer
        if not crops or recognizer is None:
            return
        try:
            with self.pack.model_calls:
                embeddings = recognizer.embed(crops, self.recognition_batch)
        except Exception as error:
            log.exception("recognition failed")
            for prepared in batch:
                if prepared.crops:
                    prepared.outcome.faces.clear()
                    prepared.outcome.error = ImageFailure(
                        common_pb2.ERROR_REASON_INTERNAL,
                        f"recognition failed ({type(error).__name__}); see the service log",
                    )
            return
        row = 0
        for prepared in batch:
            _attach(prepared.outcome, embeddings[row : row + len(prepared.crops)])
            row += len(prepared.crops)


# --- the request reader ---------------------------------------------------------------------
class RequestReader(threading.Thread):
    """Takes requests off the call, at most `slots` images in flight, and hands each to the
    workers; its futures go to the batcher in request order."""

    def __init__(
        self,
        requests: Iterator[common_pb2.ImageRequest],
        submit: Callable[[common_pb2.ImageRequest], Future[_Prepared]],
        batcher: RecognitionBatcher,
        slots: threading.Semaphore,
        stopping: threading.Event,
    ) -> None:
        super().__init__(daemon=True, name="requests")
        self.requests = requests
        self.submit = submit
        self.batcher = batcher
        self.slots = slots
        self.stopping = stopping

    def run(self) -> None:
        try:
            for request in self.requests:
                self.slots.acquire()
                if self.stopping.is_set():
                    done: Future[_Prepared] = Future()
                    failure = ImageFailure(
                        common_pb2.ERROR_REASON_NOT_DONE, "the service is shutting down"
                    )
                    done.set_result(_Prepared(Outcome(request.id, error=failure)))
                    self.batcher.put(done)
                else:
                    self.batcher.put(self.submit(request))
        except Exception as error:  # the client went away: end the stream quietly
            log.info("request stream ended", reason=str(error))
        finally:
            self.batcher.close()


class FacePipeline:
    """Workers decode, detect and align images in parallel; where recognition runs is the
    batching policy (PerImage on CPU, AcrossImages on an accelerator whose recognizer takes a
    dynamic batch). Results are plain dataclasses; the servicer turns them into messages."""

    def __init__(
        self,
        pack: ModelPack,
        config: InferenceSettings,
        max_bytes: int,
        roots: Roots | None = None,
    ) -> None:
        """`roots`: the folders image paths may name (None: in-process, paths trusted)."""
        self.pack = pack
        self.config = config
        self.max_bytes = max_bytes
        self.roots = roots
        self.stopping = threading.Event()
        self.decode_budget = DecodeBudget(config.decode.max_decode_bytes)
        self._workers = ThreadPoolExecutor(config.runtime.image_workers, thread_name_prefix="image")
        # Process-wide: this process's OpenCV work is the image workers'.
        cv2.setNumThreads(config.runtime.opencv_threads or -1)
        eye = settings.inference().recognition.align_eye_distance_at_112
        size = pack.recognizer.input_size if pack.recognizer else 112
        self._align_eye_px = eye * size / 112
        recognizer = pack.recognizer
        across = recognizer is not None and recognizer.dynamic_batch and pack.accelerated
        self.policy: BatchPolicy = (
            AcrossImages(config.recognition.batch_size) if across else PerImage()
        )

    def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)

    def run(self, requests: Iterator[common_pb2.ImageRequest], mode: Mode) -> Iterator[Outcome]:
        slots = threading.Semaphore(self.config.runtime.images_in_flight)
        batcher = RecognitionBatcher(self.pack, self.policy, self.config.recognition.batch_size)
        reader = RequestReader(
            requests,
            lambda request: self._workers.submit(self._prepare, request, mode),
            batcher,
            slots,
            self.stopping,
        )
        reader.start()
        try:
            for batch in batcher.batches():
                for prepared in batch:
                    slots.release()
                    yield prepared.outcome
        finally:
            # Unblock the reader if the consumer stopped early.
            for _ in range(self.config.runtime.images_in_flight):
                slots.release()

    # --- one image, on a worker ------------------------------------------------------------
    def _prepare(self, request: common_pb2.ImageRequest, mode: Mode) -> _Prepared:
        outcome = Outcome(request.id)
        try:
            data = read_source(request, self.max_bytes, self.roots)
            decoded = decode(
                data,
                self.config.decode.max_image_pixels,
                long_side=2 * self.config.detection.input_size,
                budget=self.decode_budget,
            )
            outcome.width, outcome.height = decoded.width, decoded.height
            outcome.capture_time = decoded.capture_time
            with self.pack.model_calls:
                detections = self.pack.detector.detect(decoded.bgr, request.detect_size)
            if mode is Mode.COUNT:
                outcome.faces = [FaceResult(det_score=d.score) for d in detections]
                return _Prepared(outcome)
            aligned = self._alignment_source(decoded, detections)
            crops = []
            for detection in detections:
                face, crop = self._describe(detection, decoded, aligned, mode)
                outcome.faces.append(face)
                if crop is not None:
                    crops.append(crop)
            recognizer = self.pack.recognizer
            if crops and recognizer is not None and self.policy.embeds_on_worker:
                with self.pack.model_calls:
                    _attach(outcome, recognizer.embed(crops, self.config.recognition.batch_size))
                crops = []
            return _Prepared(outcome, crops)
        except DecodeError as error:
            outcome.error = ImageFailure(error.reason, error.message)
        except Exception as error:
            log.exception("image failed", id=request.id)
            # The exception's words stay in the service log: they may quote the file's bytes.
            outcome.error = ImageFailure(
                common_pb2.ERROR_REASON_INTERNAL,
                f"internal error ({type(error).__name__}); the service log has the details",
            )
        outcome.faces.clear()
        return _Prepared(outcome)

    def _alignment_source(self, decoded: Decoded, detections: list[Detection]) -> Decoded:
        """Pixels dense enough that no face is upsampled by alignment (re-decoded if need be)."""
        if decoded.scale >= 1.0 or not detections:
            return decoded
        eye_gaps = [float(np.linalg.norm(d.kps[1] - d.kps[0])) for d in detections]
        needed = max(decoded.scale * self._align_eye_px / max(gap, 1e-3) for gap in eye_gaps)
        if needed <= decoded.scale * 1.001:
            return decoded
        return decode(
            decoded.data,
            self.config.decode.max_image_pixels,
            min_scale=min(1.0, needed),
            budget=self.decode_budget,
        )

    def _describe(
        self, detection: Detection, decoded: Decoded, aligned: Decoded, mode: Mode
    ) -> tuple[FaceResult, np.ndarray | None]:
        to_full = 1.0 / decoded.scale
        bbox = detection.bbox * to_full
        kps = detection.kps * to_full
        a_bbox, a_kps = bbox * aligned.scale, kps * aligned.scale
        face = FaceResult(
            bbox=bbox.tolist(),
            kps=kps.reshape(-1).tolist(),
            det_score=detection.score,
            face_short=float(min(bbox[2] - bbox[0], bbox[3] - bbox[1])),
            blur=face_sharpness(aligned.bgr, a_bbox),
            blur_measure=MEASURE,
        )
        pose_done = False
        if self.pack.landmark_2d_106 is not None:
            with self.pack.model_calls:
                points, _ = self.pack.landmark_2d_106.run(aligned.bgr, a_bbox)
            face.landmark_2d_106 = (points[:, :2] / aligned.scale).reshape(-1).tolist()
        if self.pack.landmark_3d_68 is not None:
            with self.pack.model_calls:
                points, pose = self.pack.landmark_3d_68.run(aligned.bgr, a_bbox)
            face.landmark_3d_68 = (points[:, :3] / aligned.scale).reshape(-1).tolist()
            if pose is not None:
                pitch, yaw, roll = (float(v) for v in pose)
                face.pose = Pose(yaw, pitch, roll, common_pb2.POSE_SOURCE_LANDMARK_3D68)
                pose_done = True
        if not pose_done:
            yaw, pitch, roll = pose_from_keypoints(kps, (decoded.height, decoded.width))
            face.pose = Pose(yaw, pitch, roll, common_pb2.POSE_SOURCE_KEYPOINTS_PNP)
        crop = None
        if mode is Mode.EMBED and self.pack.recognizer is not None:
            crop = self.pack.recognizer.align(aligned.bgr, a_kps)
        return face, crop
