from facesets.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ExportSwapRequest(_message.Message):
    __slots__ = ("store", "refine_manifest", "out", "raw_manifest", "candidates", "top_n", "outlier_threshold", "pad_ratio", "out_size", "min_face_short", "candidate_match_threshold", "candidate_min_score", "clustering_address", "inference_address")
    STORE_FIELD_NUMBER: _ClassVar[int]
    REFINE_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    RAW_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PAD_RATIO_FIELD_NUMBER: _ClassVar[int]
    OUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SHORT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_MATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    CLUSTERING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    store: str
    refine_manifest: str
    out: str
    raw_manifest: str
    candidates: bool
    top_n: int
    outlier_threshold: float
    pad_ratio: float
    out_size: int
    min_face_short: float
    candidate_match_threshold: float
    candidate_min_score: float
    clustering_address: str
    inference_address: str
    def __init__(self, store: _Optional[str] = ..., refine_manifest: _Optional[str] = ..., out: _Optional[str] = ..., raw_manifest: _Optional[str] = ..., candidates: _Optional[bool] = ..., top_n: _Optional[int] = ..., outlier_threshold: _Optional[float] = ..., pad_ratio: _Optional[float] = ..., out_size: _Optional[int] = ..., min_face_short: _Optional[float] = ..., candidate_match_threshold: _Optional[float] = ..., candidate_min_score: _Optional[float] = ..., clustering_address: _Optional[str] = ..., inference_address: _Optional[str] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("out",)
    OUT_FIELD_NUMBER: _ClassVar[int]
    out: str
    def __init__(self, out: _Optional[str] = ...) -> None: ...

class OcclusionRequest(_message.Message):
    __slots__ = ("out", "inference_address", "threshold", "faceset_fraction", "occluded_prompts", "clear_prompt", "dry_run", "undo")
    OUT_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FACESET_FRACTION_FIELD_NUMBER: _ClassVar[int]
    OCCLUDED_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    UNDO_FIELD_NUMBER: _ClassVar[int]
    out: str
    inference_address: str
    threshold: float
    faceset_fraction: float
    occluded_prompts: _containers.RepeatedScalarFieldContainer[str]
    clear_prompt: str
    dry_run: bool
    undo: bool
    def __init__(self, out: _Optional[str] = ..., inference_address: _Optional[str] = ..., threshold: _Optional[float] = ..., faceset_fraction: _Optional[float] = ..., occluded_prompts: _Optional[_Iterable[str]] = ..., clear_prompt: _Optional[str] = ..., dry_run: _Optional[bool] = ..., undo: _Optional[bool] = ...) -> None: ...

class DedupOptimizeRequest(_message.Message):
    __slots__ = ("out", "inference_address", "near_duplicate_similarity", "dry_run")
    OUT_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    out: str
    inference_address: str
    near_duplicate_similarity: float
    dry_run: bool
    def __init__(self, out: _Optional[str] = ..., inference_address: _Optional[str] = ..., near_duplicate_similarity: _Optional[float] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("out", "run_id", "faceset")
    OUT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    out: str
    run_id: str
    faceset: str
    def __init__(self, out: _Optional[str] = ..., run_id: _Optional[str] = ..., faceset: _Optional[str] = ...) -> None: ...
