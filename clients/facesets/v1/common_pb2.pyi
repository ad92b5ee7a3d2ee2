from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PoseSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POSE_SOURCE_UNSPECIFIED: _ClassVar[PoseSource]
    POSE_SOURCE_LANDMARK_3D68: _ClassVar[PoseSource]
    POSE_SOURCE_KEYPOINTS_PNP: _ClassVar[PoseSource]

class BlurMeasure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLUR_MEASURE_UNSPECIFIED: _ClassVar[BlurMeasure]
    BLUR_MEASURE_CANONICAL: _ClassVar[BlurMeasure]

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_EMPTY_FILE: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_AN_IMAGE: _ClassVar[ErrorReason]
    ERROR_REASON_CORRUPT: _ClassVar[ErrorReason]
    ERROR_REASON_TOO_MANY_PIXELS: _ClassVar[ErrorReason]
    ERROR_REASON_TOO_LARGE: _ClassVar[ErrorReason]
    ERROR_REASON_UNREADABLE: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_DONE: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
    ERROR_REASON_CHANGED: _ClassVar[ErrorReason]
POSE_SOURCE_UNSPECIFIED: PoseSource
POSE_SOURCE_LANDMARK_3D68: PoseSource
POSE_SOURCE_KEYPOINTS_PNP: PoseSource
BLUR_MEASURE_UNSPECIFIED: BlurMeasure
BLUR_MEASURE_CANONICAL: BlurMeasure
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_EMPTY_FILE: ErrorReason
ERROR_REASON_NOT_AN_IMAGE: ErrorReason
ERROR_REASON_CORRUPT: ErrorReason
ERROR_REASON_TOO_MANY_PIXELS: ErrorReason
ERROR_REASON_TOO_LARGE: ErrorReason
ERROR_REASON_UNREADABLE: ErrorReason
ERROR_REASON_NOT_DONE: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason
ERROR_REASON_CHANGED: ErrorReason

class ImageRequest(_message.Message):
    __slots__ = ("id", "data", "path", "detect_size", "expect")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DETECT_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    id: str
    data: bytes
    path: str
    detect_size: int
    expect: FileStamp
    def __init__(self, id: _Optional[str] = ..., data: _Optional[bytes] = ..., path: _Optional[str] = ..., detect_size: _Optional[int] = ..., expect: _Optional[_Union[FileStamp, _Mapping]] = ...) -> None: ...

class FileStamp(_message.Message):
    __slots__ = ("size", "mtime_ns")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    size: int
    mtime_ns: int
    def __init__(self, size: _Optional[int] = ..., mtime_ns: _Optional[int] = ...) -> None: ...

class Pose(_message.Message):
    __slots__ = ("yaw", "pitch", "roll", "source")
    YAW_FIELD_NUMBER: _ClassVar[int]
    PITCH_FIELD_NUMBER: _ClassVar[int]
    ROLL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    yaw: float
    pitch: float
    roll: float
    source: PoseSource
    def __init__(self, yaw: _Optional[float] = ..., pitch: _Optional[float] = ..., roll: _Optional[float] = ..., source: _Optional[_Union[PoseSource, str]] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("bbox", "kps", "det_score", "embedding", "embedding_dim", "face_short", "blur", "landmark_2d_106", "landmark_3d_68", "pose", "blur_measure")
    BBOX_FIELD_NUMBER: _ClassVar[int]
    KPS_FIELD_NUMBER: _ClassVar[int]
    DET_SCORE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    FACE_SHORT_FIELD_NUMBER: _ClassVar[int]
    BLUR_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_2D_106_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_3D_68_FIELD_NUMBER: _ClassVar[int]
    POSE_FIELD_NUMBER: _ClassVar[int]
    BLUR_MEASURE_FIELD_NUMBER: _ClassVar[int]
    bbox: _containers.RepeatedScalarFieldContainer[float]
    kps: _containers.RepeatedScalarFieldContainer[float]
    det_score: float
    embedding: bytes
    embedding_dim: int
    face_short: float
    blur: float
    landmark_2d_106: _containers.RepeatedScalarFieldContainer[float]
    landmark_3d_68: _containers.RepeatedScalarFieldContainer[float]
    pose: Pose
    blur_measure: BlurMeasure
    def __init__(self, bbox: _Optional[_Iterable[float]] = ..., kps: _Optional[_Iterable[float]] = ..., det_score: _Optional[float] = ..., embedding: _Optional[bytes] = ..., embedding_dim: _Optional[int] = ..., face_short: _Optional[float] = ..., blur: _Optional[float] = ..., landmark_2d_106: _Optional[_Iterable[float]] = ..., landmark_3d_68: _Optional[_Iterable[float]] = ..., pose: _Optional[_Union[Pose, _Mapping]] = ..., blur_measure: _Optional[_Union[BlurMeasure, str]] = ...) -> None: ...

class ImageError(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: ErrorReason
    message: str
    def __init__(self, reason: _Optional[_Union[ErrorReason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("id", "width", "height", "faces", "error", "capture_time", "replica")
    ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    id: str
    width: int
    height: int
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    error: ImageError
    capture_time: str
    replica: str
    def __init__(self, id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., error: _Optional[_Union[ImageError, _Mapping]] = ..., capture_time: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("progress", "done")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    done: JobDone
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., done: _Optional[_Union[JobDone, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "done", "total", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done: int
    total: int
    message: str
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class JobDone(_message.Message):
    __slots__ = ("summary_json", "manifest_path")
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_PATH_FIELD_NUMBER: _ClassVar[int]
    summary_json: str
    manifest_path: str
    def __init__(self, summary_json: _Optional[str] = ..., manifest_path: _Optional[str] = ...) -> None: ...

class QualityGate(_message.Message):
    __slots__ = ("min_short", "min_blur", "min_det_score")
    MIN_SHORT_FIELD_NUMBER: _ClassVar[int]
    MIN_BLUR_FIELD_NUMBER: _ClassVar[int]
    MIN_DET_SCORE_FIELD_NUMBER: _ClassVar[int]
    min_short: float
    min_blur: float
    min_det_score: float
    def __init__(self, min_short: _Optional[float] = ..., min_blur: _Optional[float] = ..., min_det_score: _Optional[float] = ...) -> None: ...
