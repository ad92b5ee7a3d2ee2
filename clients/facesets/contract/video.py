"""The video jobs of the media service: typed parameters (defaults from contract/defaults.py,
ranges checked) and typed requests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from facesets.contract import defaults
from facesets.contract.fields import (
    COSINE_DISTANCE,
    COSINE_SIMILARITY,
    FRACTION,
    NON_NEGATIVE,
    SCORE,
    InvalidParameter,
    Params,
    Range,
    bounded,
    described,
)
from facesets.contract.requests import JobRequest
from facesets.v1 import common_pb2, export_pb2, export_pb2_grpc

SECONDS = Range(0.0, what="a number of seconds")
POSITIVE_SECONDS = Range(0.0, low_open=True, what="a number of seconds")


@dataclass(frozen=True)
class VideoPlanParams(Params):
    shot_threshold: float = bounded(
        defaults.VIDEO_SHOT_THRESHOLD,
        Range(0.0, 255.0),
        "PySceneDetect content-detector threshold (lower finds more cuts)",
    )
    min_shot_s: float = bounded(
        defaults.VIDEO_MIN_SHOT_S,
        SECONDS,
        "shortest shot, seconds",
    )
    sample_fps: float = bounded(
        defaults.VIDEO_SAMPLE_FPS,
        Range(0.0, 60.0, low_open=True),
        "frames sampled per second, on the video's own timeline",
    )
    max_yaw: float = bounded(
        defaults.VIDEO_MAX_YAW,
        Range(0.0, 90.0, what="degrees"),
        "quality gate: largest |yaw| of a passing face, degrees",
    )
    min_face_short: float = bounded(
        defaults.VIDEO_MIN_FACE_SHORT,
        NON_NEGATIVE,
        "quality gate: smallest face box short edge, source pixels",
    )
    min_det_score: float = bounded(
        defaults.VIDEO_MIN_DET_SCORE,
        SCORE,
        "quality gate: smallest detector score",
    )
    min_pass_rate: float = bounded(
        defaults.VIDEO_MIN_PASS_RATE,
        FRACTION,
        "share of a segment's sampled frames that must pass the gate",
    )
    min_segment_s: float = bounded(
        defaults.VIDEO_MIN_SEGMENT_S,
        SECONDS,
        "shortest kept segment, seconds",
    )
    max_segment_s: float = bounded(
        defaults.VIDEO_MAX_SEGMENT_S,
        POSITIVE_SECONDS,
        "longest segment, seconds (longer tracks are split)",
    )
    merge_gap_s: float = bounded(
        defaults.VIDEO_MERGE_GAP_S,
        SECONDS,
        "segments of the same face in a shot closer than this are merged, seconds",
    )
    track_min_iou: float = bounded(
        defaults.VIDEO_TRACK_MIN_IOU,
        FRACTION,
        "box overlap (IoU) with a track's last box that links a face to it",
    )
    track_min_similarity: float = bounded(
        defaults.VIDEO_TRACK_MIN_SIMILARITY,
        COSINE_SIMILARITY,
        "embedding cosine similarity a linked face needs as well",
    )
    match_threshold: float = bounded(
        defaults.VIDEO_MATCH_THRESHOLD,
        COSINE_DISTANCE,
        "--match: largest cosine distance of a track's mean to the centroid",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_segment_s < self.min_segment_s:
            raise InvalidParameter(
                "max_segment_s", self.max_segment_s, f">= min_segment_s ({self.min_segment_s})"
            )


@dataclass(frozen=True)
class VideoCutParams(Params):
    accurate: bool = described(
        False, "re-encode every clip (frame-exact cuts) instead of copying the stream"
    )
    write_sidecar: bool = described(False, "write a JSON sidecar beside each clip")


@dataclass(frozen=True)
class VideoPlanRequest(JobRequest):
    src: Path
    out: Path
    match_dir: Path | None = None  # keep only tracks of the person of this faceset's images
    params: VideoPlanParams = field(default_factory=VideoPlanParams)
    proto = export_pb2.PlanVideosRequest
    stage = "video plan"

    def call(self, stub: export_pb2_grpc.ExportStub) -> Iterator[common_pb2.JobEvent]:
        return stub.PlanVideos(self.to_proto())


@dataclass(frozen=True)
class VideoCutRequest(JobRequest):
    out: Path
    params: VideoCutParams = field(default_factory=VideoCutParams)
    sources: tuple[Path, ...] = ()  # the planned videos (or their folders), read by ffmpeg
    proto = export_pb2.CutSegmentsRequest
    stage = "video cut"

    def call(self, stub: export_pb2_grpc.ExportStub) -> Iterator[common_pb2.JobEvent]:
        return stub.CutSegments(self.to_proto())
