"""The export job's typed, validated parameters, built from its request here.

Defaults come from settings; `facesets export-swap`, `run` and `immich import` read their flag
defaults from this class. An unset `optional` request field takes the default, a set one is
used as given (zero included) or refused, naming the field and its range.
"""

from __future__ import annotations

from dataclasses import dataclass

from facesets.common import settings
from facesets.contract.fields import (
    COSINE_DISTANCE,
    NON_NEGATIVE,
    POSITIVE_COUNT,
    SCORE,
    InvalidParameter,
    Range,
    bounded,
    check_ranges,
)
from facesets.export.errors import ExportError
from facesets.v1 import export_pb2


class InvalidExportParameter(InvalidParameter, ExportError):
    """An export parameter outside its range (INVALID_ARGUMENT over gRPC)."""


FIELDS = (
    "top_n",
    "outlier_threshold",
    "pad_ratio",
    "out_size",
    "min_face_short",
    "candidate_match_threshold",
    "candidate_min_score",
)


@dataclass(frozen=True)
class ExportSwapParams:
    top_n: int = bounded(settings.EXPORT_TOP_N, POSITIVE_COUNT)
    outlier_threshold: float = bounded(settings.EXPORT_OUTLIER_THRESHOLD, COSINE_DISTANCE)
    pad_ratio: float = bounded(settings.EXPORT_PAD_RATIO, Range(0.0, 2.0))
    out_size: int = bounded(settings.EXPORT_OUT_SIZE, Range(16, integer=True))
    min_face_short: float = bounded(float(settings.EXPORT_MIN_FACE_SHORT), NON_NEGATIVE)
    candidate_match_threshold: float = bounded(settings.CANDIDATE_MATCH_THRESHOLD, COSINE_DISTANCE)
    candidate_min_score: float = bounded(settings.CANDIDATE_MIN_SCORE, SCORE)

    def __post_init__(self) -> None:
        check_ranges(self, InvalidExportParameter)

    @classmethod
    def from_request(cls, request: export_pb2.ExportSwapRequest) -> ExportSwapParams:
        return cls(**{name: getattr(request, name) for name in FIELDS if request.HasField(name)})
