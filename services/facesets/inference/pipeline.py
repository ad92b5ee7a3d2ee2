"""Streams of images through decode → detect → align → recognise, with bounded queues.

Decoding runs in a thread pool ahead of the models; a semaphore bounds the images in flight,
so a fast client is held back by gRPC flow control rather than by memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import structlog

from facesets.common import settings
from facesets.common.decode import Decoded, DecodeError, decode, read_source
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
class Outcome:
    """One image's result: faces, or an error."""

    id: str
    width: int = 0
    height: int = 0
    capture_time: str = ""
    faces: list[common_pb2.Face] = field(default_factory=list)
    error: common_pb2.ImageError | None = None


@dataclass
class _Prepared:
    """An image after the workers' part: its outcome so far and the crops to recognise."""

    outcome: Outcome
    crops: list[np.ndarray] = field(default_factory=list)


_END = object()


def _attach(outcome: Outcome, embeddings: np.ndarray) -> None:
    """Embeddings, in order, onto the image's first faces (those that were aligned)."""
    for face, embedding in zip(outcome.faces, embeddings, strict=False):
        face.embedding = embedding.astype("<f4").tobytes()
        face.embedding_dim = embeddings.shape[1]


def _error(reason: int, message: str) -> common_pb2.ImageError:
    return common_pb2.ImageError(reason=reason, message=message)


class FacePipeline:
    """Workers decode, detect and align images in parallel.

    Where recognition runs is the batching policy: on an accelerator, a recognizer that takes a
    dynamic batch runs on the stream's own thread over crops gathered across every image already
    submitted (one large call keeps the device busy); on CPU, each worker embeds its own image's
    faces, so recognition is spread over every core instead of queueing on one thread.
    """

    def __init__(self, pack: ModelPack, config: InferenceSettings, max_bytes: int) -> None:
        self.pack = pack
        self.config = config
        self.max_bytes = max_bytes
        self.stopping = threading.Event()
        self._workers = ThreadPoolExecutor(config.image_workers, thread_name_prefix="image")
        eye = settings.ALIGN_EYE_DISTANCE_AT_112
        size = pack.recognizer.input_size if pack.recognizer else 112
        self._align_eye_px = eye * size / 112
        recognizer = pack.recognizer
        self._batch_across_images = (
            recognizer is not None and recognizer.dynamic_batch and pack.accelerated
        )

    def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)

    # --- the stream ----------------------------------------------------------------------
    def _read_requests(
        self,
        requests: Iterator[common_pb2.ImageRequest],
        mode: Mode,
        out: queue.Queue,
        slots: threading.Semaphore,
    ) -> None:
        try:
            for request in requests:
                slots.acquire()
                if self.stopping.is_set():
                    done: Future[_Prepared] = Future()
                    done.set_result(
                        _Prepared(
                            Outcome(
                                request.id,
                                error=_error(
                                    common_pb2.ERROR_REASON_NOT_DONE, "the service is shutting down"
                                ),
                            )
                        )
                    )
                    out.put(done)
                else:
                    out.put(self._workers.submit(self._prepare, request, mode))
        except Exception as error:  # the client went away: end the stream quietly
            log.info("request stream ended", reason=str(error))
        finally:
            out.put(_END)

    def run(self, requests: Iterator[common_pb2.ImageRequest], mode: Mode) -> Iterator[Outcome]:
        slots = threading.Semaphore(self.config.images_in_flight)
        pending: queue.Queue = queue.Queue()
        reader = threading.Thread(
            target=self._read_requests, args=(requests, mode, pending, slots), daemon=True
        )
        reader.start()
        batch: list[_Prepared] = []
        try:
            while True:
                future = pending.get()
                if future is _END:
                    break
                batch.append(future.result())
                faces = sum(len(p.crops) for p in batch)
                if faces >= self.config.recognition_batch or not self._worth_waiting(pending):
                    yield from self._flush(batch, slots)
                    batch = []
            yield from self._flush(batch, slots)
        finally:
            # Unblock the reader if the consumer stopped early.
            for _ in range(self.config.images_in_flight):
                slots.release()

    def _worth_waiting(self, pending: queue.Queue) -> bool:
        """Whether to add the next image to this recognition batch before running it.

        Only when recognition batches across images (see the class): the batch then gathers
        every image already submitted. Otherwise each image's faces are embedded already, so
        its result goes out at once.
        """
        if not self._batch_across_images:
            return False
        with pending.mutex:
            head = pending.queue[0] if pending.queue else None
        return head is not None and head is not _END

    def _flush(self, batch: list[_Prepared], slots: threading.Semaphore) -> Iterator[Outcome]:
        crops = [crop for prepared in batch for crop in prepared.crops]
        if crops and self.pack.recognizer is not None:
            try:
                with self.pack.model_calls:
                    embeddings = self.pack.recognizer.embed(crops, self.config.recognition_batch)
            except Exception as error:
                log.exception("recognition failed")
                for prepared in batch:
                    if prepared.crops:
                        prepared.outcome.faces.clear()
                        prepared.outcome.error = _error(
                            common_pb2.ERROR_REASON_INTERNAL, str(error)
                        )
                embeddings = None
            if embeddings is not None:
                row = 0
                for prepared in batch:
                    _attach(prepared.outcome, embeddings[row : row + len(prepared.crops)])
                    row += len(prepared.crops)
        for prepared in batch:
            slots.release()
            yield prepared.outcome

    # --- one image, on a worker ------------------------------------------------------------
    def _prepare(self, request: common_pb2.ImageRequest, mode: Mode) -> _Prepared:
        outcome = Outcome(request.id)
        try:
            data = read_source(request, self.max_bytes)
            decoded = decode(data, self.config.max_image_pixels, long_side=2 * self.config.det_size)
            outcome.width, outcome.height = decoded.width, decoded.height
            outcome.capture_time = decoded.capture_time
            with self.pack.model_calls:
                detections = self.pack.detector.detect(decoded.bgr)
            if mode is Mode.COUNT:
                outcome.faces = [common_pb2.Face(det_score=d.score) for d in detections]
                return _Prepared(outcome)
            aligned = self._alignment_source(decoded, detections)
            crops = []
            for detection in detections:
                face, crop = self._describe(detection, decoded, aligned, mode)
                outcome.faces.append(face)
                if crop is not None:
                    crops.append(crop)
            recognizer = self.pack.recognizer
            if crops and recognizer is not None and not self._batch_across_images:
                with self.pack.model_calls:
                    _attach(outcome, recognizer.embed(crops, self.config.recognition_batch))
                crops = []
            return _Prepared(outcome, crops)
        except DecodeError as error:
            outcome.error = _error(error.reason, error.message)
        except Exception as error:
            log.exception("image failed", id=request.id)
            outcome.error = _error(
                common_pb2.ERROR_REASON_INTERNAL, f"{type(error).__name__}: {error}"
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
        return decode(decoded.data, self.config.max_image_pixels, min_scale=min(1.0, needed))

    def _describe(
        self, detection: Detection, decoded: Decoded, aligned: Decoded, mode: Mode
    ) -> tuple[common_pb2.Face, np.ndarray | None]:
        to_full = 1.0 / decoded.scale
        bbox = detection.bbox * to_full
        kps = detection.kps * to_full
        a_bbox, a_kps = bbox * aligned.scale, kps * aligned.scale
        face = common_pb2.Face(
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
            face.landmark_2d_106.extend((points[:, :2] / aligned.scale).reshape(-1).tolist())
        if self.pack.landmark_3d_68 is not None:
            with self.pack.model_calls:
                points, pose = self.pack.landmark_3d_68.run(aligned.bgr, a_bbox)
            face.landmark_3d_68.extend((points[:, :3] / aligned.scale).reshape(-1).tolist())
            if pose is not None:
                pitch, yaw, roll = (float(v) for v in pose)
                face.pose.CopyFrom(
                    common_pb2.Pose(
                        yaw=yaw, pitch=pitch, roll=roll, source=common_pb2.POSE_SOURCE_LANDMARK_3D68
                    )
                )
                pose_done = True
        if not pose_done:
            yaw, pitch, roll = pose_from_keypoints(kps, (decoded.height, decoded.width))
            face.pose.CopyFrom(
                common_pb2.Pose(
                    yaw=yaw, pitch=pitch, roll=roll, source=common_pb2.POSE_SOURCE_KEYPOINTS_PNP
                )
            )
        crop = None
        if mode is Mode.EMBED and self.pack.recognizer is not None:
            crop = self.pack.recognizer.align(aligned.bgr, a_kps)
        return face, crop
