"""The export service's jobs: one typed parameters object and one typed request each.

Export (roop-ready facesets), the review report, and the maintenance runs over an export
(occlusion, dedup-optimize, merge, restore). Parameters follow the same rules as clustering's
(contract/fields.py): defaults from contract/defaults.py, ranges checked when built.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from facesets.contract import defaults
from facesets.contract.fields import (
    COSINE_DISTANCE,
    COSINE_SIMILARITY,
    NON_NEGATIVE,
    POSITIVE_COUNT,
    SCORE,
    InvalidParameter,
    Params,
    Range,
    bounded,
    described,
)
from facesets.contract.requests import JobRequest
from facesets.v1 import common_pb2, export_pb2, export_pb2_grpc

JobEvents = Iterator[common_pb2.JobEvent]
Stub = export_pb2_grpc.ExportStub
_FACESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


# --- parameters ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportSwapParams(Params):
    top_n: int = bounded(
        defaults.EXPORT_TOP_N, POSITIVE_COUNT, "crops in each faceset's top .fsz bundle"
    )
    outlier_threshold: float = bounded(
        defaults.EXPORT_OUTLIER_THRESHOLD,
        COSINE_DISTANCE,
        "crops farther than this from their faceset's centre are rejected",
    )
    pad_ratio: float = bounded(
        defaults.EXPORT_PAD_RATIO, Range(0.0, 2.0), "padding around the face box, as its share"
    )
    out_size: int = bounded(
        defaults.EXPORT_OUT_SIZE, Range(16, integer=True), "side of the square PNG crops, pixels"
    )
    min_face_short: float = bounded(
        float(defaults.EXPORT_MIN_FACE_SHORT),
        NON_NEGATIVE,
        "smallest face short edge a crop is made from, source pixels",
    )
    candidate_match_threshold: float = bounded(
        defaults.CANDIDATE_MATCH_THRESHOLD,
        COSINE_DISTANCE,
        "a singleton face this close to a faceset's centre is offered as a candidate",
    )
    candidate_min_score: float = bounded(
        defaults.CANDIDATE_MIN_SCORE, SCORE, "smallest quality score of a candidate"
    )


@dataclass(frozen=True)
class OcclusionParams(Params):
    threshold: float = bounded(
        defaults.OCCLUSION_THRESHOLD, SCORE, "a PNG at or above this occlusion score moves aside"
    )
    faceset_fraction: float = bounded(
        defaults.OCCLUSION_FACESET_FRACTION,
        SCORE,
        "a faceset with at least this share occluded moves to _masked/",
    )
    occluded_prompts: tuple[str, ...] = described(
        defaults.OCCLUSION_PROMPTS, "zero-shot prompts of an occluded face"
    )
    clear_prompt: str = described(
        defaults.OCCLUSION_CLEAR_PROMPT, "the zero-shot prompt of a clear face"
    )
    dry_run: bool = described(False, "score and report, move nothing")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.occluded_prompts or not all(p.strip() for p in self.occluded_prompts):
            raise InvalidParameter(
                "occluded_prompts", self.occluded_prompts, "one or more non-empty prompts"
            )

    @property
    def prompts(self) -> list[str]:
        return [*self.occluded_prompts, self.clear_prompt]


@dataclass(frozen=True)
class DedupOptimizeParams(Params):
    near_duplicate_similarity: float = bounded(
        defaults.DEDUP_OPTIMIZE_SIMILARITY,
        COSINE_SIMILARITY,
        "PNGs of one faceset at or above this embedding similarity collapse to the better one",
    )
    dry_run: bool = described(False, "list what would move, move nothing")


@dataclass(frozen=True)
class MergeParams(Params):
    faceset: str = ""  # the faceset that goes (a name in the `facesets` partition)
    into: str = ""  # the faceset it joins
    dry_run: bool = described(False, "list what would move, move nothing")

    def __post_init__(self) -> None:
        super().__post_init__()
        for field_name in ("faceset", "into"):
            value = getattr(self, field_name)
            if not _FACESET_NAME.fullmatch(value):
                raise InvalidParameter(field_name, value, "a faceset name, never a path")
        if self.faceset == self.into:
            raise InvalidParameter("into", self.into, f"a faceset other than {self.faceset}")


# --- requests ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportSwapRequest(JobRequest):
    store: Path
    refine_manifest: Path
    out: Path
    raw_manifest: Path | None = None  # needed by candidates
    candidates: bool = False
    params: ExportSwapParams = field(default_factory=ExportSwapParams)
    proto = export_pb2.ExportSwapRequest
    stage = "export"

    def __post_init__(self) -> None:
        if self.candidates and not self.raw_manifest:
            raise ValueError(
                "candidates need the raw manifest of `facesets cluster` (--raw-manifest)"
            )

    def call(self, stub: Stub) -> JobEvents:
        return stub.ExportSwap(self.to_proto())


@dataclass(frozen=True)
class ReportRequest(JobRequest):
    """(Re)write the review report of an export folder from its manifests."""

    out: Path
    proto = export_pb2.ReportRequest
    stage = "report"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Report(self.to_proto())


@dataclass(frozen=True)
class OcclusionRequest(JobRequest):
    out: Path
    params: OcclusionParams = field(default_factory=OcclusionParams)
    undo: bool = False  # restore the last occlusion run instead
    proto = export_pb2.OcclusionRequest
    stage = "occlusion"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Occlusion(self.to_proto())


@dataclass(frozen=True)
class DedupOptimizeRequest(JobRequest):
    out: Path
    params: DedupOptimizeParams = field(default_factory=DedupOptimizeParams)
    proto = export_pb2.DedupOptimizeRequest
    stage = "dedup-optimize"

    def call(self, stub: Stub) -> JobEvents:
        return stub.DedupOptimize(self.to_proto())


@dataclass(frozen=True)
class MergeRequest(JobRequest):
    out: Path
    params: MergeParams
    proto = export_pb2.MergeRequest
    stage = "merge"

    def call(self, stub: Stub) -> JobEvents:
        return stub.Merge(self.to_proto())


@dataclass(frozen=True)
class RestoreRequest(JobRequest):
    out: Path
    run_id: str = ""
    faceset: str = ""
    proto = export_pb2.RestoreRequest
    stage = "restore"

    def __post_init__(self) -> None:
        if bool(self.run_id) == bool(self.faceset):
            raise ValueError("restore needs exactly one of --run ID or --faceset NAME")

    def call(self, stub: Stub) -> JobEvents:
        return stub.Restore(self.to_proto())
