"""The video jobs' typed, validated parameters (defaults from settings, ranges checked)."""

from __future__ import annotations

from dataclasses import dataclass

from facesets.common import settings
from facesets.contract.fields import (
    COSINE_DISTANCE,
    COSINE_SIMILARITY,
    FRACTION,
    NON_NEGATIVE,
    SCORE,
    InvalidParameter,
    Range,
    bounded,
    check_ranges,
)
from facesets.v1 import export_pb2

SECONDS = Range(0.0, what="a number of seconds")
POSITIVE_SECONDS = Range(0.0, low_open=True, what="a number of seconds")

PLAN_FIELDS = (
    "shot_threshold",
    "min_shot_s",
    "sample_fps",
    "max_yaw",
    "min_face_short",
    "min_det_score",
    "min_pass_rate",
    "min_segment_s",
    "max_segment_s",
    "merge_gap_s",
    "track_min_iou",
    "track_min_similarity",
    "match_threshold",
)


@dataclass(frozen=True)
class VideoPlanParams:
    shot_threshold: float = bounded(settings.VIDEO_SHOT_THRESHOLD, Range(0.0, 255.0))
    min_shot_s: float = bounded(settings.VIDEO_MIN_SHOT_S, SECONDS)
    sample_fps: float = bounded(settings.VIDEO_SAMPLE_FPS, Range(0.0, 60.0, low_open=True))
    max_yaw: float = bounded(settings.VIDEO_MAX_YAW, Range(0.0, 90.0, what="degrees"))
    min_face_short: float = bounded(settings.VIDEO_MIN_FACE_SHORT, NON_NEGATIVE)
    min_det_score: float = bounded(settings.VIDEO_MIN_DET_SCORE, SCORE)
    min_pass_rate: float = bounded(settings.VIDEO_MIN_PASS_RATE, FRACTION)
    min_segment_s: float = bounded(settings.VIDEO_MIN_SEGMENT_S, SECONDS)
    max_segment_s: float = bounded(settings.VIDEO_MAX_SEGMENT_S, POSITIVE_SECONDS)
    merge_gap_s: float = bounded(settings.VIDEO_MERGE_GAP_S, SECONDS)
    track_min_iou: float = bounded(settings.VIDEO_TRACK_MIN_IOU, FRACTION)
    track_min_similarity: float = bounded(settings.VIDEO_TRACK_MIN_SIMILARITY, COSINE_SIMILARITY)
    match_threshold: float = bounded(settings.VIDEO_MATCH_THRESHOLD, COSINE_DISTANCE)

    def __post_init__(self) -> None:
        check_ranges(self, InvalidParameter)
        if self.max_segment_s < self.min_segment_s:
            raise InvalidParameter(
                "max_segment_s", self.max_segment_s, f">= min_segment_s ({self.min_segment_s})"
            )

    @classmethod
    def from_request(cls, request: export_pb2.PlanVideosRequest) -> VideoPlanParams:
        return cls(
            **{name: getattr(request, name) for name in PLAN_FIELDS if request.HasField(name)}
        )


@dataclass(frozen=True)
class VideoCutParams:
    accurate: bool = False
    write_sidecar: bool = False

    @classmethod
    def from_request(cls, request: export_pb2.CutSegmentsRequest) -> VideoCutParams:
        return cls(accurate=request.accurate, write_sidecar=request.write_sidecar)
