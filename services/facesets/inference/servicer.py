"""The Inference gRPC service: Detect, Embed, CountFaces, ClipScore, GetInfo."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from importlib import metadata

import cv2
import grpc
import numpy as np
import structlog

from facesets.common import settings
from facesets.common.decode import DecodeError, open_image, read_source
from facesets.common.roots import Roots
from facesets.common.settings import InferenceSettings
from facesets.inference import clip
from facesets.inference.models import ModelPack, load_pack
from facesets.inference.pipeline import FacePipeline, FaceResult, ImageFailure, Mode, Outcome
from facesets.inference.runtime import OrtInstall, probe
from facesets.inference.session import ProviderChoice, choose_providers
from facesets.v1 import common_pb2, inference_pb2, inference_pb2_grpc

log = structlog.get_logger(__name__)
SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name


def _face(face: FaceResult) -> common_pb2.Face:
    message = common_pb2.Face(
        bbox=face.bbox,
        kps=face.kps,
        det_score=face.det_score,
        face_short=face.face_short,
        blur=face.blur,
        blur_measure=face.blur_measure,  # type: ignore[arg-type]  # an int the pipeline took from the enum
        landmark_2d_106=face.landmark_2d_106,
        landmark_3d_68=face.landmark_3d_68,
    )
    if face.pose is not None:
        pose = face.pose
        message.pose.CopyFrom(
            common_pb2.Pose(
                yaw=pose.yaw,
                pitch=pose.pitch,
                roll=pose.roll,
                source=pose.source,  # type: ignore[arg-type]  # an int the pipeline took from the enum
            )
        )
    if face.embedding is not None:
        message.embedding = face.embedding.astype("<f4").tobytes()
        message.embedding_dim = face.embedding.shape[0]
    return message


def _error(failure: ImageFailure) -> common_pb2.ImageError:
    return common_pb2.ImageError(reason=failure.reason, message=failure.message)  # type: ignore[arg-type]  # the pipeline keeps ErrorReason values as ints


def _result(outcome: Outcome, replica: str) -> common_pb2.ImageResult:
    result = common_pb2.ImageResult(
        id=outcome.id,
        replica=replica,
        width=outcome.width,
        height=outcome.height,
        faces=[_face(face) for face in outcome.faces],
        capture_time=outcome.capture_time,
    )
    if outcome.error is not None:
        result.error.CopyFrom(_error(outcome.error))
    return result


@functools.cache  # installed versions do not change while the service runs; clients poll GetInfo
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    def __init__(
        self,
        pack: ModelPack,
        config: InferenceSettings,
        max_bytes: int,
        install: OrtInstall | None = None,
        scorer: clip.ClipScorer | None = None,
        roots: Roots | None = None,
    ) -> None:
        self.pack = pack
        self.scorer = scorer or clip.build(config, pack.providers)
        self.config = config
        self.max_bytes = max_bytes
        self.install = install or probe()
        self.roots = roots or Roots()
        self.pipeline = FacePipeline(pack, config, max_bytes, self.roots)
        self.replica = ""  # named once the server is bound (serve.py)

    def stop(self) -> None:
        self.pipeline.stopping.set()

    def Detect(
        self, request_iterator: Iterator[common_pb2.ImageRequest], context: grpc.ServicerContext
    ) -> Iterator[common_pb2.ImageResult]:
        for outcome in self.pipeline.run(request_iterator, Mode.DETECT):
            yield _result(outcome, self.replica)

    def Embed(
        self, request_iterator: Iterator[common_pb2.ImageRequest], context: grpc.ServicerContext
    ) -> Iterator[common_pb2.ImageResult]:
        if self.pack.recognizer is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model pack '{self.pack.name}' has no recognition model",
            )
        for outcome in self.pipeline.run(request_iterator, Mode.EMBED):
            yield _result(outcome, self.replica)

    def CountFaces(
        self, request_iterator: Iterator[common_pb2.ImageRequest], context: grpc.ServicerContext
    ) -> Iterator[inference_pb2.FaceCount]:
        for outcome in self.pipeline.run(request_iterator, Mode.COUNT):
            count = inference_pb2.FaceCount(id=outcome.id, count=len(outcome.faces))
            if outcome.error is not None:
                count.error.CopyFrom(_error(outcome.error))
            yield count

    def ClipScore(
        self,
        request_iterator: Iterator[inference_pb2.ClipScoreRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[inference_pb2.ClipScoreResult]:
        prompts: list[str] = []
        batch: list[tuple[str, np.ndarray]] = []
        for request in request_iterator:
            if not prompts:
                prompts = [p for p in request.prompts if p.strip()]
                if not prompts:
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "the first ClipScoreRequest must carry at least one prompt",
                    )
                self._load_clip(context)
            try:
                data = read_source(request.image, self.max_bytes, self.roots)
                with open_image(data, self.config.decode.max_image_pixels) as image:
                    batch.append((request.image.id, self.scorer.pixels(image)))
            except DecodeError as error:
                yield inference_pb2.ClipScoreResult(
                    id=request.image.id,
                    error=common_pb2.ImageError(reason=error.reason, message=error.message),  # type: ignore[arg-type]  # DecodeError keeps ErrorReason values as ints
                )
                continue
            if len(batch) >= settings.inference().clip.batch_size:
                yield from self._clip_results(batch, prompts)
                batch = []
        if batch:
            yield from self._clip_results(batch, prompts)

    def _load_clip(self, context: grpc.ServicerContext) -> None:
        try:
            self.scorer.load()
        except clip.ClipUnavailable as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))

    def _clip_results(
        self, batch: list[tuple[str, np.ndarray]], prompts: list[str]
    ) -> Iterator[inference_pb2.ClipScoreResult]:
        scores = self.scorer.score(np.stack([pixels for _, pixels in batch]), prompts)
        for (image_id, _), row in zip(batch, scores, strict=True):
            yield inference_pb2.ClipScoreResult(id=image_id, scores=row.tolist())

    def GetInfo(
        self, request: inference_pb2.GetInfoRequest, context: grpc.ServicerContext
    ) -> inference_pb2.ModelInfo:
        loaded = self.scorer.loaded_meta
        return inference_pb2.ModelInfo(
            model_pack=self.pack.name,
            embedding_dim=self.pack.recognizer.dim if self.pack.recognizer else 0,
            providers=self.pack.providers,
            versions={
                name: _version(name)
                for name in (
                    "facesets",
                    "onnxruntime",
                    "onnxruntime-directml",
                    "onnxruntime-gpu",
                    "insightface",
                    "numpy",
                    "opencv-python",
                    "grpcio",
                    "ftfy",
                )
                if _version(name) != "not installed"
            },
            models=[f"{task}: {file}" for task, file in sorted(self.pack.files.items())],
            has_landmark_2d_106=self.pack.landmark_2d_106 is not None,
            has_landmark_3d_68=self.pack.landmark_3d_68 is not None,
            detector_size=self.config.detection.input_size,
            max_image_pixels=self.config.decode.max_image_pixels,
            max_message_bytes=self.max_bytes,
            image_workers=self.config.runtime.image_workers,
            opencv_threads=cv2.getNumThreads(),
            onnxruntime_distribution=self.install.loaded_distribution,
            onnxruntime_version=self.install.version,
            onnxruntime_distributions=[f"{n}=={v}" for n, v in self.install.distributions],
            available_providers=list(self.install.available),
            replica=self.replica,
            # once loaded, what the folder was exported from; before, what it is expected to be
            clip_model=loaded.model if loaded else self.scorer.spec.model,
            clip_pretrained=loaded.pretrained if loaded else self.scorer.spec.pretrained,
            clip_loaded=bool(self.scorer.loaded_providers),
            clip_providers=self.scorer.loaded_providers,
            clip_unavailable=self.scorer.unavailable,
        )


def build(
    config: InferenceSettings,
    max_bytes: int = settings.shared().server.max_message_bytes,
    choice: ProviderChoice | None = None,
    roots: Roots | None = None,
) -> InferenceServicer:
    """`choice` is the start-up check's result; without one, `config.runtime.providers` is taken as
    an explicit order."""
    choice = choice or choose_providers(config.runtime.providers)
    pack = load_pack(
        config.model_root,
        config.model_pack,
        choice.chosen,
        config.detection.input_size,
        config.detection.score_threshold,
        config.runtime.intra_op_threads,
    )
    return InferenceServicer(pack, config, max_bytes, choice.install, roots=roots)


def register(servicer: InferenceServicer) -> Callable[[grpc.Server], None]:
    def add(server: grpc.Server) -> None:
        inference_pb2_grpc.add_InferenceServicer_to_server(servicer, server)

    return add
