from facesets.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaceCount(_message.Message):
    __slots__ = ("id", "count", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    count: int
    error: _common_pb2.ImageError
    def __init__(self, id: _Optional[str] = ..., count: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.ImageError, _Mapping]] = ...) -> None: ...

class ClipScoreRequest(_message.Message):
    __slots__ = ("image", "prompts")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageRequest
    prompts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageRequest, _Mapping]] = ..., prompts: _Optional[_Iterable[str]] = ...) -> None: ...

class ClipScoreResult(_message.Message):
    __slots__ = ("id", "scores", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    error: _common_pb2.ImageError
    def __init__(self, id: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ..., error: _Optional[_Union[_common_pb2.ImageError, _Mapping]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_pack", "embedding_dim", "providers", "versions", "models", "has_landmark_2d_106", "has_landmark_3d_68", "detector_size", "max_image_pixels", "max_message_bytes", "image_workers", "onnxruntime_distribution", "onnxruntime_version", "onnxruntime_distributions", "available_providers", "replica", "clip_model", "clip_pretrained", "clip_loaded", "clip_providers", "clip_unavailable", "opencv_threads")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_PACK_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    HAS_LANDMARK_2D_106_FIELD_NUMBER: _ClassVar[int]
    HAS_LANDMARK_3D_68_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_DISTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    CLIP_MODEL_FIELD_NUMBER: _ClassVar[int]
    CLIP_PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    CLIP_LOADED_FIELD_NUMBER: _ClassVar[int]
    CLIP_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    CLIP_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    OPENCV_THREADS_FIELD_NUMBER: _ClassVar[int]
    model_pack: str
    embedding_dim: int
    providers: _containers.RepeatedScalarFieldContainer[str]
    versions: _containers.ScalarMap[str, str]
    models: _containers.RepeatedScalarFieldContainer[str]
    has_landmark_2d_106: bool
    has_landmark_3d_68: bool
    detector_size: int
    max_image_pixels: int
    max_message_bytes: int
    image_workers: int
    onnxruntime_distribution: str
    onnxruntime_version: str
    onnxruntime_distributions: _containers.RepeatedScalarFieldContainer[str]
    available_providers: _containers.RepeatedScalarFieldContainer[str]
    replica: str
    clip_model: str
    clip_pretrained: str
    clip_loaded: bool
    clip_providers: _containers.RepeatedScalarFieldContainer[str]
    clip_unavailable: str
    opencv_threads: int
    def __init__(self, model_pack: _Optional[str] = ..., embedding_dim: _Optional[int] = ..., providers: _Optional[_Iterable[str]] = ..., versions: _Optional[_Mapping[str, str]] = ..., models: _Optional[_Iterable[str]] = ..., has_landmark_2d_106: _Optional[bool] = ..., has_landmark_3d_68: _Optional[bool] = ..., detector_size: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., image_workers: _Optional[int] = ..., onnxruntime_distribution: _Optional[str] = ..., onnxruntime_version: _Optional[str] = ..., onnxruntime_distributions: _Optional[_Iterable[str]] = ..., available_providers: _Optional[_Iterable[str]] = ..., replica: _Optional[str] = ..., clip_model: _Optional[str] = ..., clip_pretrained: _Optional[str] = ..., clip_loaded: _Optional[bool] = ..., clip_providers: _Optional[_Iterable[str]] = ..., clip_unavailable: _Optional[str] = ..., opencv_threads: _Optional[int] = ...) -> None: ...
