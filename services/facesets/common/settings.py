"""Every threshold, default and limit of the services: one typed settings object per service.

`shared()` holds what all three services use (the gRPC server, image decoding), `inference()`,
`clustering()` and `export()` (the export/media service) what one service uses. Each field has
a type, a default, a range where it is a threshold and a description; each can be overridden
by an environment variable: FACESETS_, the group and the field in capitals joined by `__`,
e.g. FACESETS_NEIGHBOURS__ANN_NPROBE=8 or FACESETS_REPORT__THUMB_SIZE=160 (tuples and the
quality weights as JSON: FACESETS_AGE__PROBE_THRESHOLDS='[0.3, 0.4]'). The model pack keeps its
names FACESETS_MODEL_ROOT and FACESETS_MODEL_PACK, and the CLIP folder FACESETS_CLIP_MODEL,
FACESETS_CLIP_PRETRAINED, FACESETS_CLIP_CACHE and FACESETS_CLIP_DIR.

Group names never reuse a facesets.toml key (FACESETS_INFERENCE is the inference service's
address, not a group) nor another object's group (but `decode`: the inference object reads the
same variables as the shared one, as the defaults of its flags). Each object is read once, on first
use (`reset()` forgets them); `check()` reads all four, as `facesets serve` does before it
starts, and a bad value is a `SettingsError` naming its variable.

Defaults follow the original single-script pipeline; commands expose the job parameters as
flags whose defaults are the contract's (facesets.contract.defaults).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as _SourceError

# Transport defaults live with the client library (it installs without the services).
from facesets.client import defaults as transport

PREFIX = "FACESETS_"
DELIMITER = "__"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, as containers and taskset set it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not offered on Windows and macOS
        return max(1, os.cpu_count() or 1)


UserPath = Annotated[Path, AfterValidator(lambda path: path.expanduser())]
Similarity = Annotated[float, Field(ge=-1.0, le=1.0)]  # cosine similarity
Share = Annotated[float, Field(ge=0.0, le=1.0)]

_CONFIG = SettingsConfigDict(
    env_prefix=PREFIX,
    env_nested_delimiter=DELIMITER,
    env_ignore_empty=True,
    extra="ignore",
)


class _Group(BaseModel):
    """A group of settings; read from FACESETS_GROUP__FIELD."""


# --- shared: the server and image decoding ---------------------------------------------------
class ServerSettings(_Group):
    # Every streaming call holds one RPC thread for as long as it is open, an idle one too; so a
    # service runs at most max_concurrent_streams streams at once (beyond it a call is answered
    # RESOURCE_EXHAUSTED at once) and keeps rpc_threads_unary more threads that no stream can
    # take, for health checks, GetInfo and the other unary calls.
    max_concurrent_streams: int = Field(
        default=64, ge=1, description="streams a service runs at once"
    )
    rpc_threads_unary: int = Field(default=16, ge=1, description="RPC threads kept for unary calls")
    # The transport accepts messages up to this many times the per-image byte limit, so that an
    # image just over that limit reaches the per-image check and gets an error result of its own
    # (the stream goes on); one message beyond the transport limit ends the stream.
    transport_limit_factor: int = Field(
        default=2, ge=1, description="transport message limit, in per-image limits"
    )
    max_message_bytes: int = Field(
        default=transport.MAX_MESSAGE_BYTES,
        ge=1024,
        description="bytes of one image (the per-image limit)",
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0.0, description="seconds in-flight calls get to finish at a stop"
    )
    # A job whose caller went away is no call the server waits for; once its processes are
    # killed it only removes its part files (milliseconds), so a short wait is enough.
    job_cleanup_s: float = Field(
        default=3.0, ge=0.0, description="seconds running jobs get to clean up at a stop"
    )
    inference_listen: str = Field(
        default="127.0.0.1:50051", min_length=1, description="inference service's default address"
    )
    clustering_listen: str = Field(
        default="127.0.0.1:50052", min_length=1, description="clustering service's default address"
    )
    export_listen: str = Field(
        default="127.0.0.1:50053",
        min_length=1,
        description="export/media service's default address",
    )


class DecodeSettings(_Group):
    max_image_pixels: int = Field(
        default=120_000_000, ge=1, description="decompression-bomb limit (pixels of the full image)"
    )
    # Bytes that image decodes may hold at once (estimated from each header); a decode waits
    # until the budget has room, and an image whose decode alone needs more is refused.
    max_decode_bytes: int = Field(
        default=2 * 1024 * 1024 * 1024, ge=1, description="bytes image decodes may hold at once"
    )
    # Threads one HEIF or AVIF decode may use: the image workers already decode one image per
    # core. The photo extensions and formats read live in contract/photo_formats.py.
    photo_threads: int = Field(default=1, ge=1, description="threads of one HEIF or AVIF decode")


class SharedSettings(BaseSettings):
    """What every service uses: FACESETS_SERVER__*, FACESETS_DECODE__*."""

    model_config = _CONFIG

    server: ServerSettings = Field(default_factory=ServerSettings)
    decode: DecodeSettings = Field(default_factory=DecodeSettings)


# --- inference -------------------------------------------------------------------------------
class DetectionSettings(_Group):
    # The detector's input fits the photo's aspect with this long side; a photo smaller than it
    # is detected at its own size, never enlarged (inference/models.py, Detector.input_for).
    input_size: int = Field(
        default=640, ge=32, le=4096, description="detector input's long side, pixels"
    )
    score_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="least detector score kept"
    )


class RecognitionSettings(_Group):
    batch_size: int = Field(
        default=32,
        ge=1,
        description="faces per recognizer call when the graph takes a dynamic batch",
    )
    # Faces are aligned from pixels where the eyes lie at least this far apart, the spacing of
    # ArcFace's 112-px template (35 px between eye centres), so the recognizer never upsamples.
    align_eye_distance_at_112: float = Field(
        default=35.0, gt=0.0, description="eye spacing (px) faces are aligned from, at 112 px"
    )


class RuntimeSettings(_Group):
    providers: tuple[Literal["dml", "cuda", "cpu"], ...] = Field(
        default=("dml", "cuda", "cpu"), min_length=1, description="execution providers, in order"
    )
    # Images are decoded, detected, aligned and (on CPU) recognised by this many workers at
    # once; each model call runs on its worker's thread alone (intra_op_threads), which keeps
    # every core busy across images instead of splitting one small convolution.
    image_workers: int = Field(
        default_factory=usable_cores, ge=1, description="images worked on at once"
    )
    intra_op_threads: int = Field(
        default=1, ge=0, description="ONNX Runtime threads per model call (0: every core)"
    )
    # OpenCV's own thread pool (resize, warpAffine, filters) only oversubscribes the cores the
    # image workers keep busy: on 40 large photos (2 cores, two workers) 144.1 ms of CPU a
    # photo with one thread against 146.6 with OpenCV's default of two, lower in all 8
    # alternating runs (README, "Embedding").
    opencv_threads: int = Field(
        default=1, ge=0, description="OpenCV threads per call (0: OpenCV's default, every core)"
    )
    # Images being decoded or detected per stream (backpressure), per worker: two keep each
    # worker fed while finished images wait to be sent.
    images_in_flight_per_worker: int = Field(
        default=2, ge=1, description="images in flight per worker"
    )
    images_in_flight_min: int = Field(
        default=16, ge=1, description="images in flight per stream, least"
    )

    @property
    def images_in_flight(self) -> int:
        return max(self.images_in_flight_min, self.images_in_flight_per_worker * self.image_workers)


class SharpnessSettings(_Group):
    # Sharpness (Face.blur): variance of the Laplacian of Gaussian (sigma px) of the face's
    # gray levels, its box resized to a face_side px short side; the same face scores the same
    # at any resolution (inference/sharpness.py).
    face_side: int = Field(default=112, ge=16, description="short side (px) a face is measured at")
    sigma: float = Field(
        default=1.0, gt=0.0, description="Gaussian sigma (px) before the Laplacian"
    )


class ClipSettings(_Group):
    # Zero-shot scoring (ClipScore): an open_clip architecture and pretrained tag (or a
    # checkpoint file), as the original corpus scripts use, exported once by `facesets clip
    # export` to a folder of ONNX towers, tokenizer vocabulary and meta.json (default
    # MODEL_ROOT/clip/onnx/MODEL--TAG); weights and custom architecture configs for the export
    # live in the CLIP cache folder.
    model: str = Field(default="ViT-L-14", min_length=1, description="open_clip architecture")
    pretrained: str = Field(
        default="dfn2b_s39b",
        min_length=1,
        description="open_clip pretrained tag or checkpoint file",
    )
    cache: UserPath | None = Field(
        default=None, description="CLIP cache folder (None: MODEL_ROOT/clip)"
    )
    dir: UserPath | None = Field(
        default=None,
        description="exported CLIP folder (None: CACHE/onnx/MODEL--TAG, where `facesets clip "
        "export` writes)",
    )
    cache_subdir: str = Field(
        default="clip", min_length=1, description="CLIP cache under MODEL_ROOT"
    )
    batch_size: int = Field(default=16, ge=1, description="images per image-tower call")
    retry_s: float = Field(
        default=30.0,
        ge=0.0,
        description="a CLIP model that failed to load is tried again after this",
    )


class _LegacyEnv(PydanticBaseSettingsSource):
    """The variables that named inference settings before the groups, still read (below the
    FACESETS_GROUP__FIELD names)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads them all

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, loc in LEGACY_NAMES.items():
            value = os.environ.get(name)
            if value:
                group = found
                for key in loc[:-1]:
                    group = group.setdefault(key, {})
                group[loc[-1]] = value
        return found


class InferenceSettings(BaseSettings):
    """The inference service's settings; `facesets serve inference` fills the flags it is given
    into a copy."""

    model_config = _CONFIG

    model_root: UserPath = Field(
        default=Path("~/.insightface"),
        validate_default=True,
        description="folder holding models/PACK",
    )
    model_pack: str = Field(default="buffalo_l", min_length=1, description="model pack name")
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    recognition: RecognitionSettings = Field(default_factory=RecognitionSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    sharpness: SharpnessSettings = Field(default_factory=SharpnessSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)
    # The same variables as shared().decode; `serve inference` flags override them here.
    decode: DecodeSettings = Field(default_factory=DecodeSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _LegacyEnv(settings_cls), dotenv_settings)

    @property
    def clip_cache_dir(self) -> Path:
        return self.clip.cache or self.model_root / self.clip.cache_subdir


# Old variable -> the field it sets (a FACESETS_GROUP__FIELD name wins over it).
LEGACY_NAMES: dict[str, tuple[str, ...]] = {
    "FACESETS_CLIP_MODEL": ("clip", "model"),
    "FACESETS_CLIP_PRETRAINED": ("clip", "pretrained"),
    "FACESETS_CLIP_CACHE": ("clip", "cache"),
    "FACESETS_CLIP_DIR": ("clip", "dir"),
}


# --- clustering ------------------------------------------------------------------------------
class NeighbourSettings(_Group):
    # Neighbour search of cluster, refine and extend (clustering/neighbours.py), through faiss:
    # "auto" searches a flat (exact) index below ann_min_faces faces and an inverted-file index
    # (IVF, approximate) from there on; "exact" is the blocked numpy search, "flat" and "ivf"
    # force one index. The IVF search keeps each face's ann_neighbours nearest faces within the
    # threshold, scanning the ann_nprobe of its ann_nlist lists nearest to it (0 lists: about
    # 4 sqrt(faces)).
    search: Literal["auto", "exact", "flat", "ivf"] = Field(
        default="auto", description="neighbour search backend"
    )
    ann_min_faces: int = Field(
        default=100_000, ge=0, description="faces from which auto searches IVF"
    )
    ann_nlist: int = Field(default=0, ge=0, description="IVF lists (0: about 4 sqrt(faces))")
    ann_nprobe: int = Field(default=16, ge=1, description="IVF lists scanned per face")
    ann_neighbours: int = Field(default=48, ge=1, description="nearest faces kept per face (IVF)")
    # Faces whose ann_neighbours nearest all lie within the threshold (a large identity spread
    # over many lists; 44% of the 200k synthetic store), and those whose list has room
    # (ann_room_again), are searched again over ann_dense_nprobe lists: the full faces' share
    # of exact nearest found rises from 0.990 at 16 lists to 0.997 at 64 (bench store of
    # 200,000 faces, 1,789 lists, 1,000 sampled faces). Million-face library store (4,000
    # lists), 2,000 sampled faces: list recall 0.9870 at 64 lists (259 s in all), 0.9893 at 96
    # (306 s), 0.9927 (0.9905-0.9946) at 112 (349 s), 0.9952 at 128 (368 s); 112 meets 0.99
    # under 6 minutes on 2 cores (README, "every face takes the second pass").
    ann_dense_nprobe: int = Field(
        default=112,
        ge=1,
        description="IVF lists scanned again (faces whose list is full or has room)",
    )
    # Faces whose list has room (fewer than ann_neighbours within the threshold: small
    # identities, whose faces scatter over lists) have their neighbours (in the graph from
    # either end) and those neighbours' lists scored exactly, ann_hop_rounds times (0: never).
    # Bench library store of 200,000 faces, 1,000 sampled faces: list recall 0.9855 without,
    # 0.9941 after one round (2.5 s), 0.9954 after two (4.8 s more); more probes do not reach
    # these faces (0.975 at 256 lists). Million-face library store: 281,375 faces with room
    # gained 656,782 neighbours, list recall 0.9886, the rounds 6% of the search's time.
    ann_hop_rounds: int = Field(
        default=2, ge=0, description="rounds scoring the neighbours of neighbours of sparse faces"
    )
    # Faces whose list has room are searched again over ann_dense_nprobe lists too, before the
    # hop rounds (a neighbour found in a farther list seeds the hops). Bench library store of
    # 200,000 faces, 2,000 sampled faces, after the hops: those faces' list recall 0.9859
    # without, 0.9919 for the 66,061 that held a neighbour (the search 33 -> 49 s), 0.9955 for
    # all 112k (3 s more). Million-face store, 2,000 sampled faces: list recall 0.9855 -> 0.9870
    # and BCubed recall 0.952 -> 0.965 from those holding a neighbour (261,960 faces) to all of
    # them (497,877; 16 s more search) (README, "Faces with room searched again").
    ann_room_again: bool = Field(
        default=True,
        description="search the faces whose list has room over the dense lists too",
    )
    ann_train_per_list: int = Field(
        default=32, ge=1, description="k-means sample: faces per list (training is the fixed cost)"
    )
    ann_query_batch: int = Field(
        default=16_384, ge=1, description="queries per faiss call (probe lists, extend's centroids)"
    )
    # Clustering's IVF search is a self-join run list by list: the faces probing one list times
    # its members is one float32 matrix product of at most ann_join_block similarities (BLAS
    # runs near peak from a few thousand rows; 4 Mi floats, 16 MiB, keeps the block in
    # cache-friendly bounds and memory flat whatever a list's size).
    ann_join_block: int = Field(
        default=1 << 22, ge=1, description="similarities per self-join product"
    )
    # ... and of at most ann_join_rows probing faces, gathered into one buffer reused from
    # product to product (8,192 rows of 512 floats: 16 MiB). A list of fewer than 256 faces
    # took 4 Mi / size rows, over 32 MiB: too large for the allocator to reuse, so each gather
    # mapped fresh pages and faulted them in. One list of 250 faces and 33,554 probing faces,
    # gather and product: 55.5 ms against 42.0 (60 faces: 144 against 86; 400 and more: the
    # same); the 1M bench in README, "A buffer for the probing faces".
    ann_join_rows: int = Field(
        default=8192, ge=1, description="probing faces per self-join product, at most"
    )
    ann_recall_queries: int = Field(
        default=500,
        ge=0,
        description="sampled queries whose recall is measured against brute force",
    )


class AgeSettings(_Group):
    # `facesets age`: an era probe reports cluster sizes at each of these thresholds.
    probe_thresholds: tuple[Share, ...] = Field(
        default=(0.30, 0.35, 0.40, 0.45, 0.50),
        min_length=1,
        description="thresholds an age probe tries",
    )


class ImportFolderSettings(_Group):
    # A hand-sorted folder is flagged as mixing people when its kept faces' largest cluster (at
    # the clustering threshold) holds less than min_purity of them, and the rest at least
    # mixed_min_faces.
    min_purity: Share = Field(default=0.8, description="largest cluster's share of a pure folder")
    mixed_min_faces: int = Field(
        default=2, ge=1, description="other faces that make a folder mixed"
    )


class StoreSettings(_Group):
    commit_batch: int = Field(
        default=transport.STORE_COMMIT_BATCH,
        ge=1,
        description="images per store transaction during ingestion",
    )


class PeopleSettings(_Group):
    # `facesets immich import --people`: how Immich's named people are checked.
    # Two named people whose centroids lie this close are one person named twice (refine's
    # merge threshold: clusters this close are one identity).
    named_twice_distance: float = Field(
        default=0.40, ge=0.0, le=2.0, description="centroid distance of one person named twice"
    )
    reference_faces: int = Field(
        default=3, ge=1, description="faces of a person's core shown beside one that disagrees"
    )
    core_rounds: int = Field(
        default=5, ge=1, description="re-centring rounds finding the core of a named person"
    )


class LinkageSettings(_Group):
    # Sparse linkage tasks (the large components of the neighbour graph, bundled) with at least
    # chain_min_pairs pairs below the threshold are linked by the nearest-neighbour chain
    # (clustering/chain.py, compiled with numba), smaller ones in rounds: numba's import and
    # the kernels' load cost about 1.5 s of CPU once a process, which the rounds of a small
    # task never reach (a 425,000-pair component: 0.9 s in rounds, 1.2 s by the chain with
    # that load). On the bench's million-face stores the chain links in 38 s (library) and
    # 34 s (siblings) what the rounds link in 125 s and 165 s (README, "The nearest-neighbour
    # chain", and its candidates held aside since). 0: always.
    chain_min_pairs: int = Field(
        default=50_000,
        ge=0,
        description="pairs from which a linkage task takes the compiled nearest-neighbour chain",
    )


class ClusteringSettings(BaseSettings):
    """The clustering service's settings."""

    model_config = _CONFIG

    neighbours: NeighbourSettings = Field(default_factory=NeighbourSettings)
    linkage: LinkageSettings = Field(default_factory=LinkageSettings)
    age: AgeSettings = Field(default_factory=AgeSettings)
    import_folders: ImportFolderSettings = Field(default_factory=ImportFolderSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    people: PeopleSettings = Field(default_factory=PeopleSettings)


# --- export / media --------------------------------------------------------------------------
class QualityWeights(_Group):
    frontality: Share = Field(default=0.30, description="weight of frontality in the composite")
    det_score: Share = Field(default=0.20, description="weight of the detector score")
    symmetry: Share = Field(default=0.20, description="weight of landmark symmetry")
    size: Share = Field(default=0.15, description="weight of the face's size")
    sharpness: Share = Field(default=0.15, description="weight of sharpness")

    def as_dict(self) -> dict[str, float]:
        return self.model_dump()


class QualitySettings(_Group):
    weights: QualityWeights = Field(default_factory=QualityWeights)
    yaw_limit: float = Field(
        default=60.0, gt=0.0, le=90.0, description="yaw (deg) where frontality is 0"
    )
    pitch_limit: float = Field(
        default=45.0, gt=0.0, le=90.0, description="pitch (deg) where frontality is 0"
    )
    asymmetry_limit: float = Field(
        default=0.5, gt=0.0, description="mirror error / inter-ocular distance where symmetry is 0"
    )
    size_full: float = Field(
        default=256.0,
        gt=0.0,
        description="face short edge (px) that scores full size; roop swaps at 128",
    )
    # Sharpness term of the composite: log scale from blur_low (0) to blur_high (1), placed so
    # that LFW's faces score about as they did on the earlier measure (median ~0.56).
    blur_low: float = Field(default=2.5, gt=0.0, description="sharpness that scores 0")
    blur_high: float = Field(default=100.0, gt=0.0, description="sharpness that scores 1")


class CropSettings(_Group):
    recrop_pads: tuple[Annotated[float, Field(ge=0.0)], ...] = Field(
        default=(0.25, 0.1), description="tighter paddings tried when a crop holds != 1 face"
    )
    rejected_size: int = Field(default=256, ge=16, description="side of rejected faces' thumbnails")
    check_batch: int = Field(
        default=32, ge=1, description="faces loaded, cropped and checked together (bounds memory)"
    )
    lookalike_crops: int = Field(default=4, ge=0, description="crops listed per look-alike pair")


class DuplicateSettings(_Group):
    # A re-encoded copy: embedding similarity at least `similarity` and at most `hash_bits`
    # differing bits of the crop's 64-bit pHash.
    similarity: Similarity = Field(default=0.95, description="embedding similarity of a copy")
    hash_bits: int = Field(default=12, ge=0, le=64, description="pHash bits a copy may differ by")
    prefer_larger: float = Field(
        default=1.1, ge=1.0, description="a copy this much larger replaces the kept one"
    )


class VideoSettings(_Group):
    extensions: tuple[str, ...] = Field(
        default=(".mp4", ".mkv", ".mov", ".avi", ".webm"),
        min_length=1,
        description="video files read",
    )
    shot_detect_width: int = Field(
        default=256, ge=16, description="frames are compared this wide (PySceneDetect's own choice)"
    )
    # ffmpeg threads of the decode pass. Inference beside it keeps the cores busy, and ffmpeg's
    # own threading cost about 1.8x the CPU of one thread for the same frames on a 2-core
    # machine.
    decode_threads: int = Field(default=1, ge=0, description="ffmpeg threads of the decode pass")
    send_max_side: int = Field(
        default=1280, ge=32, description="sampled frames are sent at most this long a side"
    )
    # The detector sees a sampled frame at the scale where the gate's smallest face
    # (--min-face-short) spans detect_face_px pixels, never above the service's own size: no
    # time goes to finding faces the gate drops. At 22 px a gate-sized face's embedding differs
    # from the full-size detection's no more than a 2-pixel shift of the frame makes it differ
    # (mini pack; 1080p frames detect at 544 instead of 640, 29% less work). Small videos
    # detect at no less than detect_min_size.
    detect_face_px: int = Field(
        default=22, ge=8, description="px the gate's smallest face is detected at"
    )
    detect_min_size: int = Field(default=320, ge=32, description="least detector size of a frame")
    jpeg_quality: int = Field(
        default=92, ge=1, le=100, description="JPEG quality of sampled frames"
    )
    track_reid_similarity: Similarity = Field(
        default=0.6, description="a face this similar links to a track even without box overlap"
    )
    same_face_similarity: Similarity = Field(
        default=0.5, description="mean embeddings of two tracks of the same face (merging)"
    )
    cut_tolerance_s: float = Field(
        default=0.25, ge=0.0, description="a clip whose duration is this far off its plan is redone"
    )
    accurate_crf: int = Field(default=18, ge=0, le=51, description="libx264 CRF of --accurate cuts")


class ReportSettings(_Group):
    thumb_size: int = Field(default=128, ge=16, description="longest side of report thumbnails, px")
    thumb_quality: int = Field(
        default=82, ge=1, le=100, description="JPEG quality of the thumbnails"
    )
    thumb_workers: int = Field(
        default=4, ge=1, description="threads making thumbnails (OpenCV frees the GIL)"
    )
    row_thumbs: int = Field(default=8, ge=0, description="best crops shown in a faceset's row")
    inline_items: int = Field(
        default=120,
        ge=0,
        description="candidates or dropped faces shown on the overview up to this",
    )
    # A faceset is flagged thin below thin_crops kept crops (at most), relative: fewer than
    # thin_fraction of the median faceset's, and never fewer than thin_min_crops (the report
    # shows the figure used).
    thin_crops: int = Field(
        default=20, ge=0, description="kept crops below which a faceset is thin"
    )
    thin_fraction: Share = Field(
        default=0.25, description="thin: this fraction of the median faceset"
    )
    thin_min_crops: int = Field(
        default=3, ge=0, description="the thin threshold is never below this"
    )


class ExportSettings(BaseSettings):
    """The export/media service's settings (export, maintenance, video, the review report)."""

    model_config = _CONFIG

    quality: QualitySettings = Field(default_factory=QualitySettings)
    crops: CropSettings = Field(default_factory=CropSettings)
    duplicates: DuplicateSettings = Field(default_factory=DuplicateSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)


SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    SharedSettings,
    InferenceSettings,
    ClusteringSettings,
    ExportSettings,
)


# --- loading ---------------------------------------------------------------------------------
class SettingsError(ValueError):
    """A FACESETS_* variable holds a value its setting does not take."""


def env_name(*loc: str | int) -> str:
    """The variable of the field at `loc` (group, field)."""
    return PREFIX + DELIMITER.join(str(part).upper() for part in loc)


def _names(loc: tuple[str, ...]) -> list[str]:
    """The variables that may have set the field at `loc`: the ones set, else its own."""
    names = [env_name(*loc[:n]) for n in range(len(loc), 0, -1)]
    names += [old for old, at in LEGACY_NAMES.items() if at == loc]
    return [name for name in names if os.environ.get(name)] or names[:1]


_T = TypeVar("_T", bound=BaseSettings)


def _load(cls: type[_T]) -> _T:
    try:
        return cls()
    except ValidationError as error:
        problems: dict[str, str] = {}  # one per variable: its first complaint
        for item in error.errors():
            loc = tuple(part for part in item["loc"] if isinstance(part, str))
            names = _names(loc)
            info = fields(cls).get(loc)
            what = f" ({info.description})" if info is not None and info.description else ""
            value = os.environ.get(names[0], item.get("input"))
            problems.setdefault(" / ".join(names), f"={value!s}: {item['msg']}{what}")
        said = "; ".join(name + problem for name, problem in problems.items())
        raise SettingsError(f"bad setting: {said}") from None
    except _SourceError as error:  # a tuple or group given as something that is not JSON
        match = re.search(r'field "(\w+)"', str(error))
        group = env_name(match.group(1)) if match else PREFIX + "*"
        names = sorted(n for n in os.environ if n == group or n.startswith(group + DELIMITER))
        said = ", ".join(f"{name}={os.environ[name]}" for name in names) or group
        raise SettingsError(
            f"bad setting: {said}: not JSON (tuples and groups are given as JSON, e.g. "
            "'[0.3, 0.4]')"
        ) from None


@functools.cache
def shared() -> SharedSettings:
    return _load(SharedSettings)


@functools.cache
def inference() -> InferenceSettings:
    return _load(InferenceSettings)


@functools.cache
def clustering() -> ClusteringSettings:
    return _load(ClusteringSettings)


@functools.cache
def export() -> ExportSettings:
    return _load(ExportSettings)


def check() -> None:
    """Read every settings object: a bad FACESETS_* value is a SettingsError now, not later."""
    for load in (shared, inference, clustering, export):
        load()


def reset() -> None:
    """Forget what was read: the next use reads the environment again."""
    for load in (shared, inference, clustering, export):
        load.cache_clear()


def fields(model: type[BaseModel], loc: tuple[str, ...] = ()) -> dict[tuple[str, ...], FieldInfo]:
    """Every setting of `model` (a settings class), by its path of group and field names."""
    found: dict[tuple[str, ...], FieldInfo] = {}
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found.update(fields(kind, (*loc, name)))
        else:
            found[(*loc, name)] = info
    return found


def default(cls: type[BaseModel], *loc: str) -> Any:
    """The built-in default of the field at `loc` in `cls`, whatever the environment says."""
    return fields(cls)[loc].get_default(call_default_factory=True)
