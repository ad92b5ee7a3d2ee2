from facesets.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ExportSwapRequest(_message.Message):
    __slots__ = ("store", "refine_manifest", "out", "raw_manifest", "candidates", "top_n", "outlier_threshold", "pad_ratio", "out_size", "min_face_short", "candidate_match_threshold", "candidate_min_score")
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
    def __init__(self, store: _Optional[str] = ..., refine_manifest: _Optional[str] = ..., out: _Optional[str] = ..., raw_manifest: _Optional[str] = ..., candidates: _Optional[bool] = ..., top_n: _Optional[int] = ..., outlier_threshold: _Optional[float] = ..., pad_ratio: _Optional[float] = ..., out_size: _Optional[int] = ..., min_face_short: _Optional[float] = ..., candidate_match_threshold: _Optional[float] = ..., candidate_min_score: _Optional[float] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("out",)
    OUT_FIELD_NUMBER: _ClassVar[int]
    out: str
    def __init__(self, out: _Optional[str] = ...) -> None: ...

class GetMediaInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MediaInfo(_message.Message):
    __slots__ = ("ffmpeg_path", "ffmpeg_version", "ffprobe_path", "ffmpeg_source", "scenedetect_version")
    FFMPEG_PATH_FIELD_NUMBER: _ClassVar[int]
    FFMPEG_VERSION_FIELD_NUMBER: _ClassVar[int]
    FFPROBE_PATH_FIELD_NUMBER: _ClassVar[int]
    FFMPEG_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCENEDETECT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ffmpeg_path: str
    ffmpeg_version: str
    ffprobe_path: str
    ffmpeg_source: str
    scenedetect_version: str
    def __init__(self, ffmpeg_path: _Optional[str] = ..., ffmpeg_version: _Optional[str] = ..., ffprobe_path: _Optional[str] = ..., ffmpeg_source: _Optional[str] = ..., scenedetect_version: _Optional[str] = ...) -> None: ...

class PlanVideosRequest(_message.Message):
    __slots__ = ("src", "out", "match_dir", "shot_threshold", "min_shot_s", "sample_fps", "max_yaw", "min_face_short", "min_det_score", "min_pass_rate", "min_segment_s", "max_segment_s", "merge_gap_s", "track_min_iou", "track_min_similarity", "match_threshold")
    SRC_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    MATCH_DIR_FIELD_NUMBER: _ClassVar[int]
    SHOT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_SHOT_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FPS_FIELD_NUMBER: _ClassVar[int]
    MAX_YAW_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SHORT_FIELD_NUMBER: _ClassVar[int]
    MIN_DET_SCORE_FIELD_NUMBER: _ClassVar[int]
    MIN_PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    MIN_SEGMENT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENT_S_FIELD_NUMBER: _ClassVar[int]
    MERGE_GAP_S_FIELD_NUMBER: _ClassVar[int]
    TRACK_MIN_IOU_FIELD_NUMBER: _ClassVar[int]
    TRACK_MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    src: str
    out: str
    match_dir: str
    shot_threshold: float
    min_shot_s: float
    sample_fps: float
    max_yaw: float
    min_face_short: float
    min_det_score: float
    min_pass_rate: float
    min_segment_s: float
    max_segment_s: float
    merge_gap_s: float
    track_min_iou: float
    track_min_similarity: float
    match_threshold: float
    def __init__(self, src: _Optional[str] = ..., out: _Optional[str] = ..., match_dir: _Optional[str] = ..., shot_threshold: _Optional[float] = ..., min_shot_s: _Optional[float] = ..., sample_fps: _Optional[float] = ..., max_yaw: _Optional[float] = ..., min_face_short: _Optional[float] = ..., min_det_score: _Optional[float] = ..., min_pass_rate: _Optional[float] = ..., min_segment_s: _Optional[float] = ..., max_segment_s: _Optional[float] = ..., merge_gap_s: _Optional[float] = ..., track_min_iou: _Optional[float] = ..., track_min_similarity: _Optional[float] = ..., match_threshold: _Optional[float] = ...) -> None: ...

class CutSegmentsRequest(_message.Message):
    __slots__ = ("out", "accurate", "write_sidecar")
    OUT_FIELD_NUMBER: _ClassVar[int]
    ACCURATE_FIELD_NUMBER: _ClassVar[int]
    WRITE_SIDECAR_FIELD_NUMBER: _ClassVar[int]
    out: str
    accurate: bool
    write_sidecar: bool
    def __init__(self, out: _Optional[str] = ..., accurate: _Optional[bool] = ..., write_sidecar: _Optional[bool] = ...) -> None: ...

class OcclusionRequest(_message.Message):
    __slots__ = ("out", "threshold", "faceset_fraction", "occluded_prompts", "clear_prompt", "dry_run", "undo")
    OUT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FACESET_FRACTION_FIELD_NUMBER: _ClassVar[int]
    OCCLUDED_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    UNDO_FIELD_NUMBER: _ClassVar[int]
    out: str
    threshold: float
    faceset_fraction: float
    occluded_prompts: _containers.RepeatedScalarFieldContainer[str]
    clear_prompt: str
    dry_run: bool
    undo: bool
    def __init__(self, out: _Optional[str] = ..., threshold: _Optional[float] = ..., faceset_fraction: _Optional[float] = ..., occluded_prompts: _Optional[_Iterable[str]] = ..., clear_prompt: _Optional[str] = ..., dry_run: _Optional[bool] = ..., undo: _Optional[bool] = ...) -> None: ...

class DedupOptimizeRequest(_message.Message):
    __slots__ = ("out", "near_duplicate_similarity", "dry_run")
    OUT_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    out: str
    near_duplicate_similarity: float
    dry_run: bool
    def __init__(self, out: _Optional[str] = ..., near_duplicate_similarity: _Optional[float] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class MergeRequest(_message.Message):
    __slots__ = ("out", "faceset", "into", "dry_run")
    OUT_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    INTO_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    out: str
    faceset: str
    into: str
    dry_run: bool
    def __init__(self, out: _Optional[str] = ..., faceset: _Optional[str] = ..., into: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("out", "run_id", "faceset")
    OUT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    out: str
    run_id: str
    faceset: str
    def __init__(self, out: _Optional[str] = ..., run_id: _Optional[str] = ..., faceset: _Optional[str] = ...) -> None: ...

class RejectCropsRequest(_message.Message):
    __slots__ = ("out", "faceset", "crops")
    OUT_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    CROPS_FIELD_NUMBER: _ClassVar[int]
    out: str
    faceset: str
    crops: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, out: _Optional[str] = ..., faceset: _Optional[str] = ..., crops: _Optional[_Iterable[str]] = ...) -> None: ...

class SplitRequest(_message.Message):
    __slots__ = ("out", "faceset", "crops", "into")
    OUT_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    CROPS_FIELD_NUMBER: _ClassVar[int]
    INTO_FIELD_NUMBER: _ClassVar[int]
    out: str
    faceset: str
    crops: _containers.RepeatedScalarFieldContainer[str]
    into: str
    def __init__(self, out: _Optional[str] = ..., faceset: _Optional[str] = ..., crops: _Optional[_Iterable[str]] = ..., into: _Optional[str] = ...) -> None: ...

class NameRequest(_message.Message):
    __slots__ = ("out", "faceset", "name")
    OUT_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    out: str
    faceset: str
    name: str
    def __init__(self, out: _Optional[str] = ..., faceset: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class MarkDifferentRequest(_message.Message):
    __slots__ = ("out", "faceset", "other", "store")
    OUT_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    out: str
    faceset: str
    other: str
    store: str
    def __init__(self, out: _Optional[str] = ..., faceset: _Optional[str] = ..., other: _Optional[str] = ..., store: _Optional[str] = ...) -> None: ...
