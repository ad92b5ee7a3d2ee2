from facesets.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LinkMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_MODE_AUTO: _ClassVar[LinkMode]
    LINK_MODE_HARDLINK: _ClassVar[LinkMode]
    LINK_MODE_SYMLINK: _ClassVar[LinkMode]
    LINK_MODE_COPY: _ClassVar[LinkMode]
LINK_MODE_AUTO: LinkMode
LINK_MODE_HARDLINK: LinkMode
LINK_MODE_SYMLINK: LinkMode
LINK_MODE_COPY: LinkMode

class StoreRef(_message.Message):
    __slots__ = ("store",)
    STORE_FIELD_NUMBER: _ClassVar[int]
    store: str
    def __init__(self, store: _Optional[str] = ...) -> None: ...

class PhotoUnderRequest(_message.Message):
    __slots__ = ("store", "folder")
    STORE_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    store: str
    folder: str
    def __init__(self, store: _Optional[str] = ..., folder: _Optional[str] = ...) -> None: ...

class PhotoUnderReply(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class OpenStoreRequest(_message.Message):
    __slots__ = ("store", "model_pack", "embedding_dim")
    STORE_FIELD_NUMBER: _ClassVar[int]
    MODEL_PACK_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    store: str
    model_pack: str
    embedding_dim: int
    def __init__(self, store: _Optional[str] = ..., model_pack: _Optional[str] = ..., embedding_dim: _Optional[int] = ...) -> None: ...

class StoreInfo(_message.Message):
    __slots__ = ("store", "model_pack", "embedding_dim", "schema_version", "store_id")
    STORE_FIELD_NUMBER: _ClassVar[int]
    MODEL_PACK_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    store: str
    model_pack: str
    embedding_dim: int
    schema_version: int
    store_id: str
    def __init__(self, store: _Optional[str] = ..., model_pack: _Optional[str] = ..., embedding_dim: _Optional[int] = ..., schema_version: _Optional[int] = ..., store_id: _Optional[str] = ...) -> None: ...

class FileEntry(_message.Message):
    __slots__ = ("path", "sha256", "size", "error", "mtime_ns")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size: int
    error: _common_pb2.ImageError
    mtime_ns: int
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.ImageError, _Mapping]] = ..., mtime_ns: _Optional[int] = ...) -> None: ...

class LookupPathsRequest(_message.Message):
    __slots__ = ("store", "paths")
    STORE_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    store: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, store: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ...) -> None: ...

class LookupPathsResponse(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[FileEntry]
    def __init__(self, files: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ...) -> None: ...

class RegisterFilesRequest(_message.Message):
    __slots__ = ("store", "files")
    STORE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    store: str
    files: _containers.RepeatedCompositeFieldContainer[FileEntry]
    def __init__(self, store: _Optional[str] = ..., files: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ...) -> None: ...

class RegisterFilesResponse(_message.Message):
    __slots__ = ("pending", "known", "aliases_added")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    ALIASES_ADDED_FIELD_NUMBER: _ClassVar[int]
    pending: _containers.RepeatedCompositeFieldContainer[FileEntry]
    known: int
    aliases_added: int
    def __init__(self, pending: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ..., known: _Optional[int] = ..., aliases_added: _Optional[int] = ...) -> None: ...

class KnownContentRequest(_message.Message):
    __slots__ = ("store", "sha256")
    STORE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    store: str
    sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, store: _Optional[str] = ..., sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class KnownContentResponse(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, known: _Optional[_Iterable[str]] = ...) -> None: ...

class IngestItem(_message.Message):
    __slots__ = ("file", "result")
    FILE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    file: FileEntry
    result: _common_pb2.ImageResult
    def __init__(self, file: _Optional[_Union[FileEntry, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.ImageResult, _Mapping]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("store", "item", "flush")
    STORE_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    store: str
    item: IngestItem
    flush: bool
    def __init__(self, store: _Optional[str] = ..., item: _Optional[_Union[IngestItem, _Mapping]] = ..., flush: _Optional[bool] = ...) -> None: ...

class IngestAck(_message.Message):
    __slots__ = ("committed_sha256",)
    COMMITTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    committed_sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, committed_sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class ReadFacesRequest(_message.Message):
    __slots__ = ("store", "with_embeddings", "face_ids")
    STORE_FIELD_NUMBER: _ClassVar[int]
    WITH_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    FACE_IDS_FIELD_NUMBER: _ClassVar[int]
    store: str
    with_embeddings: bool
    face_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, store: _Optional[str] = ..., with_embeddings: _Optional[bool] = ..., face_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class FaceRecord(_message.Message):
    __slots__ = ("face_id", "sha256", "path", "aliases", "face_index", "face", "image_width", "image_height")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    face_id: int
    sha256: str
    path: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    face_index: int
    face: _common_pb2.Face
    image_width: int
    image_height: int
    def __init__(self, face_id: _Optional[int] = ..., sha256: _Optional[str] = ..., path: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., face_index: _Optional[int] = ..., face: _Optional[_Union[_common_pb2.Face, _Mapping]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ...) -> None: ...

class ReadImagesRequest(_message.Message):
    __slots__ = ("store",)
    STORE_FIELD_NUMBER: _ClassVar[int]
    store: str
    def __init__(self, store: _Optional[str] = ...) -> None: ...

class ImageRecord(_message.Message):
    __slots__ = ("sha256", "path", "aliases", "size", "width", "height", "capture_time", "face_count", "error")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    path: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    size: int
    width: int
    height: int
    capture_time: str
    face_count: int
    error: _common_pb2.ImageError
    def __init__(self, sha256: _Optional[str] = ..., path: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., size: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., capture_time: _Optional[str] = ..., face_count: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.ImageError, _Mapping]] = ...) -> None: ...

class FaceUpdate(_message.Message):
    __slots__ = ("store", "face_id", "face")
    STORE_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    store: str
    face_id: int
    face: _common_pb2.Face
    def __init__(self, store: _Optional[str] = ..., face_id: _Optional[int] = ..., face: _Optional[_Union[_common_pb2.Face, _Mapping]] = ...) -> None: ...

class UpdateFacesResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class EnrichTarget(_message.Message):
    __slots__ = ("store", "has_landmark_2d_106", "has_landmark_3d_68")
    STORE_FIELD_NUMBER: _ClassVar[int]
    HAS_LANDMARK_2D_106_FIELD_NUMBER: _ClassVar[int]
    HAS_LANDMARK_3D_68_FIELD_NUMBER: _ClassVar[int]
    store: str
    has_landmark_2d_106: bool
    has_landmark_3d_68: bool
    def __init__(self, store: _Optional[str] = ..., has_landmark_2d_106: _Optional[bool] = ..., has_landmark_3d_68: _Optional[bool] = ...) -> None: ...

class LackingImage(_message.Message):
    __slots__ = ("sha256", "path", "faces_lacking", "faces_earlier_sharpness")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FACES_LACKING_FIELD_NUMBER: _ClassVar[int]
    FACES_EARLIER_SHARPNESS_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    path: str
    faces_lacking: int
    faces_earlier_sharpness: int
    def __init__(self, sha256: _Optional[str] = ..., path: _Optional[str] = ..., faces_lacking: _Optional[int] = ..., faces_earlier_sharpness: _Optional[int] = ...) -> None: ...

class EnrichFacesRequest(_message.Message):
    __slots__ = ("target", "detected")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DETECTED_FIELD_NUMBER: _ClassVar[int]
    target: EnrichTarget
    detected: _common_pb2.ImageResult
    def __init__(self, target: _Optional[_Union[EnrichTarget, _Mapping]] = ..., detected: _Optional[_Union[_common_pb2.ImageResult, _Mapping]] = ...) -> None: ...

class EnrichFacesResponse(_message.Message):
    __slots__ = ("faces_updated", "faces_not_found", "image_errors")
    FACES_UPDATED_FIELD_NUMBER: _ClassVar[int]
    FACES_NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    faces_updated: int
    faces_not_found: int
    image_errors: int
    def __init__(self, faces_updated: _Optional[int] = ..., faces_not_found: _Optional[int] = ..., image_errors: _Optional[int] = ...) -> None: ...

class StoreStats(_message.Message):
    __slots__ = ("images", "faces", "images_without_faces", "aliases", "errors_by_reason", "model_pack", "embedding_dim")
    class ErrorsByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_WITHOUT_FACES_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_PACK_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    images: int
    faces: int
    images_without_faces: int
    aliases: int
    errors_by_reason: _containers.ScalarMap[str, int]
    model_pack: str
    embedding_dim: int
    def __init__(self, images: _Optional[int] = ..., faces: _Optional[int] = ..., images_without_faces: _Optional[int] = ..., aliases: _Optional[int] = ..., errors_by_reason: _Optional[_Mapping[str, int]] = ..., model_pack: _Optional[str] = ..., embedding_dim: _Optional[int] = ...) -> None: ...

class ClusterRequest(_message.Message):
    __slots__ = ("store", "out", "threshold", "link_mode", "cannot_link", "dense_max")
    STORE_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LINK_MODE_FIELD_NUMBER: _ClassVar[int]
    CANNOT_LINK_FIELD_NUMBER: _ClassVar[int]
    DENSE_MAX_FIELD_NUMBER: _ClassVar[int]
    store: str
    out: str
    threshold: float
    link_mode: LinkMode
    cannot_link: bool
    dense_max: int
    def __init__(self, store: _Optional[str] = ..., out: _Optional[str] = ..., threshold: _Optional[float] = ..., link_mode: _Optional[_Union[LinkMode, str]] = ..., cannot_link: _Optional[bool] = ..., dense_max: _Optional[int] = ...) -> None: ...

class RefineRequest(_message.Message):
    __slots__ = ("store", "out", "initial_threshold", "merge_threshold", "outlier_threshold", "min_faces", "gate", "link_mode", "cannot_link", "outlier_min_cluster", "lookalike_margin")
    STORE_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    INITIAL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MERGE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_FACES_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    LINK_MODE_FIELD_NUMBER: _ClassVar[int]
    CANNOT_LINK_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_MIN_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LOOKALIKE_MARGIN_FIELD_NUMBER: _ClassVar[int]
    store: str
    out: str
    initial_threshold: float
    merge_threshold: float
    outlier_threshold: float
    min_faces: int
    gate: _common_pb2.QualityGate
    link_mode: LinkMode
    cannot_link: bool
    outlier_min_cluster: int
    lookalike_margin: float
    def __init__(self, store: _Optional[str] = ..., out: _Optional[str] = ..., initial_threshold: _Optional[float] = ..., merge_threshold: _Optional[float] = ..., outlier_threshold: _Optional[float] = ..., min_faces: _Optional[int] = ..., gate: _Optional[_Union[_common_pb2.QualityGate, _Mapping]] = ..., link_mode: _Optional[_Union[LinkMode, str]] = ..., cannot_link: _Optional[bool] = ..., outlier_min_cluster: _Optional[int] = ..., lookalike_margin: _Optional[float] = ...) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("store", "raw_out", "refine_out", "threshold", "link_mode", "cannot_link")
    STORE_FIELD_NUMBER: _ClassVar[int]
    RAW_OUT_FIELD_NUMBER: _ClassVar[int]
    REFINE_OUT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LINK_MODE_FIELD_NUMBER: _ClassVar[int]
    CANNOT_LINK_FIELD_NUMBER: _ClassVar[int]
    store: str
    raw_out: str
    refine_out: str
    threshold: float
    link_mode: LinkMode
    cannot_link: bool
    def __init__(self, store: _Optional[str] = ..., raw_out: _Optional[str] = ..., refine_out: _Optional[str] = ..., threshold: _Optional[float] = ..., link_mode: _Optional[_Union[LinkMode, str]] = ..., cannot_link: _Optional[bool] = ...) -> None: ...

class DedupRequest(_message.Message):
    __slots__ = ("store", "near_threshold", "face_similarity", "candidate_distance", "min_overlap", "min_inliers")
    STORE_FIELD_NUMBER: _ClassVar[int]
    NEAR_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FACE_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    MIN_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MIN_INLIERS_FIELD_NUMBER: _ClassVar[int]
    store: str
    near_threshold: float
    face_similarity: float
    candidate_distance: float
    min_overlap: float
    min_inliers: int
    def __init__(self, store: _Optional[str] = ..., near_threshold: _Optional[float] = ..., face_similarity: _Optional[float] = ..., candidate_distance: _Optional[float] = ..., min_overlap: _Optional[float] = ..., min_inliers: _Optional[int] = ...) -> None: ...

class ConsolidateRequest(_message.Message):
    __slots__ = ("facesets_dir", "store", "candidate_similarity", "confident_similarity", "undo", "dry_run", "link_mode")
    FACESETS_DIR_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENT_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    UNDO_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    LINK_MODE_FIELD_NUMBER: _ClassVar[int]
    facesets_dir: str
    store: str
    candidate_similarity: float
    confident_similarity: float
    undo: bool
    dry_run: bool
    link_mode: LinkMode
    def __init__(self, facesets_dir: _Optional[str] = ..., store: _Optional[str] = ..., candidate_similarity: _Optional[float] = ..., confident_similarity: _Optional[float] = ..., undo: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., link_mode: _Optional[_Union[LinkMode, str]] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("store", "facesets_dir", "sha256", "match_threshold", "cluster_threshold", "min_faces", "gate", "link_mode", "cannot_link", "seeds", "outlier_threshold", "outlier_min_cluster")
    STORE_FIELD_NUMBER: _ClassVar[int]
    FACESETS_DIR_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_FACES_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    LINK_MODE_FIELD_NUMBER: _ClassVar[int]
    CANNOT_LINK_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_MIN_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    store: str
    facesets_dir: str
    sha256: _containers.RepeatedScalarFieldContainer[str]
    match_threshold: float
    cluster_threshold: float
    min_faces: int
    gate: _common_pb2.QualityGate
    link_mode: LinkMode
    cannot_link: bool
    seeds: _containers.RepeatedCompositeFieldContainer[RouteSeed]
    outlier_threshold: float
    outlier_min_cluster: int
    def __init__(self, store: _Optional[str] = ..., facesets_dir: _Optional[str] = ..., sha256: _Optional[_Iterable[str]] = ..., match_threshold: _Optional[float] = ..., cluster_threshold: _Optional[float] = ..., min_faces: _Optional[int] = ..., gate: _Optional[_Union[_common_pb2.QualityGate, _Mapping]] = ..., link_mode: _Optional[_Union[LinkMode, str]] = ..., cannot_link: _Optional[bool] = ..., seeds: _Optional[_Iterable[_Union[RouteSeed, _Mapping]]] = ..., outlier_threshold: _Optional[float] = ..., outlier_min_cluster: _Optional[int] = ...) -> None: ...

class RouteSeed(_message.Message):
    __slots__ = ("key", "name", "face_ids")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FACE_IDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    face_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., face_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class AgeProbeRequest(_message.Message):
    __slots__ = ("store", "export_dir", "faceset", "sub_threshold", "anchor_min_faces", "era_years")
    STORE_FIELD_NUMBER: _ClassVar[int]
    EXPORT_DIR_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    SUB_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_MIN_FACES_FIELD_NUMBER: _ClassVar[int]
    ERA_YEARS_FIELD_NUMBER: _ClassVar[int]
    store: str
    export_dir: str
    faceset: str
    sub_threshold: float
    anchor_min_faces: int
    era_years: int
    def __init__(self, store: _Optional[str] = ..., export_dir: _Optional[str] = ..., faceset: _Optional[str] = ..., sub_threshold: _Optional[float] = ..., anchor_min_faces: _Optional[int] = ..., era_years: _Optional[int] = ...) -> None: ...

class AgeSplitRequest(_message.Message):
    __slots__ = ("store", "export_dir", "faceset", "dry_run", "recover_threshold", "tighten_threshold", "sub_threshold", "join_threshold", "anchor_min_faces", "era_years", "gate")
    STORE_FIELD_NUMBER: _ClassVar[int]
    EXPORT_DIR_FIELD_NUMBER: _ClassVar[int]
    FACESET_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    RECOVER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TIGHTEN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SUB_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    JOIN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_MIN_FACES_FIELD_NUMBER: _ClassVar[int]
    ERA_YEARS_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    store: str
    export_dir: str
    faceset: str
    dry_run: bool
    recover_threshold: float
    tighten_threshold: float
    sub_threshold: float
    join_threshold: float
    anchor_min_faces: int
    era_years: int
    gate: _common_pb2.QualityGate
    def __init__(self, store: _Optional[str] = ..., export_dir: _Optional[str] = ..., faceset: _Optional[str] = ..., dry_run: _Optional[bool] = ..., recover_threshold: _Optional[float] = ..., tighten_threshold: _Optional[float] = ..., sub_threshold: _Optional[float] = ..., join_threshold: _Optional[float] = ..., anchor_min_faces: _Optional[int] = ..., era_years: _Optional[int] = ..., gate: _Optional[_Union[_common_pb2.QualityGate, _Mapping]] = ...) -> None: ...

class TrustedFolder(_message.Message):
    __slots__ = ("label", "folder")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    label: str
    folder: str
    def __init__(self, label: _Optional[str] = ..., folder: _Optional[str] = ...) -> None: ...

class ImportFoldersRequest(_message.Message):
    __slots__ = ("store", "export", "trusted", "mixed", "first_number", "first_pass_threshold", "second_pass_threshold", "match_threshold", "dry_run", "cannot_link")
    STORE_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    MIXED_FIELD_NUMBER: _ClassVar[int]
    FIRST_NUMBER_FIELD_NUMBER: _ClassVar[int]
    FIRST_PASS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SECOND_PASS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CANNOT_LINK_FIELD_NUMBER: _ClassVar[int]
    store: str
    export: str
    trusted: _containers.RepeatedCompositeFieldContainer[TrustedFolder]
    mixed: _containers.RepeatedScalarFieldContainer[str]
    first_number: int
    first_pass_threshold: float
    second_pass_threshold: float
    match_threshold: float
    dry_run: bool
    cannot_link: bool
    def __init__(self, store: _Optional[str] = ..., export: _Optional[str] = ..., trusted: _Optional[_Iterable[_Union[TrustedFolder, _Mapping]]] = ..., mixed: _Optional[_Iterable[str]] = ..., first_number: _Optional[int] = ..., first_pass_threshold: _Optional[float] = ..., second_pass_threshold: _Optional[float] = ..., match_threshold: _Optional[float] = ..., dry_run: _Optional[bool] = ..., cannot_link: _Optional[bool] = ...) -> None: ...

class DiscoverRequest(_message.Message):
    __slots__ = ("store", "root", "export", "known_threshold", "cluster_threshold", "outlier_threshold", "min_faces", "gate", "dry_run", "cannot_link", "outlier_min_cluster")
    STORE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    KNOWN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_FACES_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CANNOT_LINK_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_MIN_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    store: str
    root: str
    export: str
    known_threshold: float
    cluster_threshold: float
    outlier_threshold: float
    min_faces: int
    gate: _common_pb2.QualityGate
    dry_run: bool
    cannot_link: bool
    outlier_min_cluster: int
    def __init__(self, store: _Optional[str] = ..., root: _Optional[str] = ..., export: _Optional[str] = ..., known_threshold: _Optional[float] = ..., cluster_threshold: _Optional[float] = ..., outlier_threshold: _Optional[float] = ..., min_faces: _Optional[int] = ..., gate: _Optional[_Union[_common_pb2.QualityGate, _Mapping]] = ..., dry_run: _Optional[bool] = ..., cannot_link: _Optional[bool] = ..., outlier_min_cluster: _Optional[int] = ...) -> None: ...

class StoreCheck(_message.Message):
    __slots__ = ("name", "ok", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class StoreCheckReply(_message.Message):
    __slots__ = ("store", "checks")
    STORE_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    store: str
    checks: _containers.RepeatedCompositeFieldContainer[StoreCheck]
    def __init__(self, store: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[StoreCheck, _Mapping]]] = ...) -> None: ...

class BackupStoreRequest(_message.Message):
    __slots__ = ("store", "dest")
    STORE_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    store: str
    dest: str
    def __init__(self, store: _Optional[str] = ..., dest: _Optional[str] = ...) -> None: ...

class BackupStoreReply(_message.Message):
    __slots__ = ("dest",)
    DEST_FIELD_NUMBER: _ClassVar[int]
    dest: str
    def __init__(self, dest: _Optional[str] = ...) -> None: ...
