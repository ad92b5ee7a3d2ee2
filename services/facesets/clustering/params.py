"""One typed, validated parameters object per clustering job, built from its request here.

Defaults come from settings; the CLI reads its flag defaults from these classes, so a default
is written once. An unset `optional` request field takes the default, a set one is used as
given (zero included) or refused with an `InvalidJobParameter` naming the field and its range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from google.protobuf.message import Message

from facesets.clustering.jobs.errors import JobError
from facesets.common import settings
from facesets.contract.fields import (
    COSINE_DISTANCE,
    COSINE_SIMILARITY,
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE_COUNT,
    SCORE,
    InvalidParameter,
    LinkMode,
    Range,
    bounded,
    check_ranges,
    given_fields,
)
from facesets.v1 import clustering_pb2


class InvalidJobParameter(InvalidParameter, JobError):
    """A clustering job parameter outside its range (INVALID_ARGUMENT over gRPC)."""


def _validate(params: Any) -> None:
    """Link modes given as text become LinkMode; every declared range is checked."""
    mode = getattr(params, "link_mode", None)
    if mode is not None:
        object.__setattr__(params, "link_mode", LinkMode.parse(mode, InvalidJobParameter))
    check_ranges(params, InvalidJobParameter)


Request = TypeVar("Request", bound=Message)


class JobParams(Generic[Request]):
    """What every clustering job's parameters object shares: its check, and its reading of the
    job's request, where each field takes the request field of its name (`given_fields`)."""

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_request(cls, request: Request) -> Self:
        return cls(**given_fields(cls, request))


@dataclass(frozen=True)
class ClusterParams(JobParams[clustering_pb2.ClusterRequest]):
    threshold: float = bounded(settings.CLUSTER_THRESHOLD, COSINE_DISTANCE)
    link_mode: LinkMode = LinkMode.AUTO
    dense_max: int = bounded(settings.DENSE_COMPONENT_MAX, POSITIVE_COUNT)
    cannot_link: bool = settings.CANNOT_LINK  # faces of one photo never share a cluster


@dataclass(frozen=True)
class RefineParams(JobParams[clustering_pb2.RefineRequest]):
    initial_threshold: float = bounded(settings.CLUSTER_THRESHOLD, COSINE_DISTANCE)
    merge_threshold: float = bounded(settings.REFINE_MERGE_THRESHOLD, COSINE_DISTANCE)
    outlier_threshold: float = bounded(settings.REFINE_OUTLIER_THRESHOLD, COSINE_DISTANCE)
    min_faces: int = bounded(settings.REFINE_MIN_FACES, POSITIVE_COUNT)
    min_short: float = bounded(float(settings.QUALITY_MIN_SHORT), NON_NEGATIVE)
    min_blur: float = bounded(settings.QUALITY_MIN_BLUR, NON_NEGATIVE)
    min_det_score: float = bounded(settings.QUALITY_MIN_DET_SCORE, SCORE)
    outlier_min_cluster: int = bounded(settings.REFINE_OUTLIER_MIN_CLUSTER, COUNT)
    link_mode: LinkMode = LinkMode.AUTO
    cannot_link: bool = settings.CANNOT_LINK
    lookalike_margin: float = bounded(settings.LOOKALIKE_MARGIN, NON_NEGATIVE)


@dataclass(frozen=True)
class ExtendParams(JobParams[clustering_pb2.ExtendRequest]):
    threshold: float = bounded(settings.EXTEND_THRESHOLD, COSINE_DISTANCE)
    # None keeps the mode each output was made with; so does the request's AUTO, its zero.
    link_mode: LinkMode | None = None
    cannot_link: bool = settings.CANNOT_LINK


@dataclass(frozen=True)
class DedupParams(JobParams[clustering_pb2.DedupRequest]):
    near_threshold: float = bounded(
        settings.NEAR_DUPLICATE_THRESHOLD,
        Range(0.0, 2.0, low_open=True, high_open=True, what="a cosine distance"),
    )
    face_similarity: float = bounded(settings.NEAR_DUPLICATE_FACE_SIMILARITY, COSINE_SIMILARITY)
    candidate_distance: float = bounded(settings.NEAR_DUPLICATE_CANDIDATE_DISTANCE, COSINE_DISTANCE)
    min_overlap: float = bounded(settings.NEAR_DUPLICATE_MIN_OVERLAP, FRACTION)
    # A similarity transform needs two point matches.
    min_inliers: int = bounded(settings.NEAR_DUPLICATE_MIN_INLIERS, Range(2, integer=True))


@dataclass(frozen=True)
class ConsolidateParams(JobParams[clustering_pb2.ConsolidateRequest]):
    candidate_similarity: float = bounded(settings.CONSOLIDATE_CANDIDATE_SIM, COSINE_SIMILARITY)
    # Complete linkage needs a similarity below 1 to cut at.
    confident_similarity: float = bounded(
        settings.CONSOLIDATE_CONFIDENT_SIM,
        Range(-1.0, 1.0, high_open=True, what="a cosine similarity"),
    )
    undo: bool = False
    dry_run: bool = False
    link_mode: LinkMode | None = None  # None keeps the refine output's mode

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.candidate_similarity > self.confident_similarity:
            raise InvalidJobParameter(
                "candidate_similarity",
                self.candidate_similarity,
                f"at most confident_similarity ({self.confident_similarity:g})",
            )


@dataclass(frozen=True)
class RouteParams(JobParams[clustering_pb2.RouteRequest]):
    match_threshold: float = bounded(settings.IMMICH_MATCH_THRESHOLD, COSINE_DISTANCE)
    cluster_threshold: float = bounded(settings.CLUSTER_THRESHOLD, COSINE_DISTANCE)
    min_faces: int = bounded(settings.REFINE_MIN_FACES, POSITIVE_COUNT)
    min_short: float = bounded(float(settings.QUALITY_MIN_SHORT), NON_NEGATIVE)
    min_blur: float = bounded(settings.QUALITY_MIN_BLUR, NON_NEGATIVE)
    min_det_score: float = bounded(settings.QUALITY_MIN_DET_SCORE, SCORE)
    outlier_threshold: float = bounded(settings.REFINE_OUTLIER_THRESHOLD, COSINE_DISTANCE)
    outlier_min_cluster: int = bounded(settings.REFINE_OUTLIER_MIN_CLUSTER, COUNT)
    link_mode: LinkMode = LinkMode.AUTO
    cannot_link: bool = settings.CANNOT_LINK


@dataclass(frozen=True)
class AgeProbeParams(JobParams[clustering_pb2.AgeProbeRequest]):
    sub_threshold: float = bounded(settings.AGE_SUB_THRESHOLD, COSINE_DISTANCE)
    anchor_min_faces: int = bounded(settings.AGE_ANCHOR_MIN_FACES, POSITIVE_COUNT)
    era_years: int = bounded(settings.AGE_ERA_YEARS, COUNT)


@dataclass(frozen=True)
class AgeSplitParams(JobParams[clustering_pb2.AgeSplitRequest]):
    recover_threshold: float = bounded(settings.AGE_RECOVER_THRESHOLD, COSINE_DISTANCE)
    tighten_threshold: float = bounded(settings.AGE_TIGHTEN_THRESHOLD, COSINE_DISTANCE)
    sub_threshold: float = bounded(settings.AGE_SUB_THRESHOLD, COSINE_DISTANCE)
    join_threshold: float = bounded(settings.AGE_JOIN_THRESHOLD, COSINE_DISTANCE)
    anchor_min_faces: int = bounded(settings.AGE_ANCHOR_MIN_FACES, POSITIVE_COUNT)
    era_years: int = bounded(settings.AGE_ERA_YEARS, COUNT)
    min_short: float = bounded(float(settings.QUALITY_MIN_SHORT), NON_NEGATIVE)
    min_blur: float = bounded(settings.QUALITY_MIN_BLUR, NON_NEGATIVE)
    min_det_score: float = bounded(settings.QUALITY_MIN_DET_SCORE, SCORE)
    dry_run: bool = False


@dataclass(frozen=True)
class ImportFoldersParams(JobParams[clustering_pb2.ImportFoldersRequest]):
    first_pass_threshold: float = bounded(settings.IMPORT_FIRST_PASS_THRESHOLD, COSINE_DISTANCE)
    second_pass_threshold: float = bounded(settings.IMPORT_SECOND_PASS_THRESHOLD, COSINE_DISTANCE)
    match_threshold: float = bounded(settings.IMPORT_MATCH_THRESHOLD, COSINE_DISTANCE)
    first_number: int = bounded(0, COUNT)  # 0: past the export's current maximum
    cannot_link: bool = settings.CANNOT_LINK
    dry_run: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.second_pass_threshold > self.first_pass_threshold:
            raise InvalidJobParameter(
                "second_pass_threshold",
                self.second_pass_threshold,
                f"at most first_pass_threshold ({self.first_pass_threshold:g})",
            )


@dataclass(frozen=True)
class DiscoverParams(JobParams[clustering_pb2.DiscoverRequest]):
    known_threshold: float = bounded(settings.DISCOVER_KNOWN_THRESHOLD, COSINE_DISTANCE)
    cluster_threshold: float = bounded(settings.CLUSTER_THRESHOLD, COSINE_DISTANCE)
    outlier_threshold: float = bounded(settings.REFINE_OUTLIER_THRESHOLD, COSINE_DISTANCE)
    outlier_min_cluster: int = bounded(settings.REFINE_OUTLIER_MIN_CLUSTER, COUNT)
    min_faces: int = bounded(settings.REFINE_MIN_FACES, POSITIVE_COUNT)
    min_short: float = bounded(float(settings.QUALITY_MIN_SHORT), NON_NEGATIVE)
    min_blur: float = bounded(settings.QUALITY_MIN_BLUR, NON_NEGATIVE)
    min_det_score: float = bounded(settings.QUALITY_MIN_DET_SCORE, SCORE)
    cannot_link: bool = settings.CANNOT_LINK
    dry_run: bool = False
