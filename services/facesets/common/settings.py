"""Every threshold, default and limit of facesets, in one place.

Defaults follow the original single-script pipeline; commands expose each one as a flag whose
default is read from here. Environment variables override a few deployment settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Transport defaults live with the client library (it installs without the services).
from facesets.client.defaults import (
    EMBED_INFLIGHT,
    JOB_RERUNS,
    KEEPALIVE_MS,
    MAX_MESSAGE_BYTES,
    RETRY_ATTEMPTS,
    RETRY_BACKOFF_MAX_S,
    RETRY_BACKOFF_S,
    RETRY_WINDOW_S,
    RPC_TIMEOUT_S,
    STORE_COMMIT_BATCH,
    STREAM_TIMEOUT_S,
)


def _env_path(name: str, default: str) -> Path:
    return Path(os.environ.get(name, default)).expanduser()


# --- models --------------------------------------------------------------------------------
DEFAULT_MODEL_PACK = "buffalo_l"
DEFAULT_MODEL_ROOT = "~/.insightface"
DETECTOR_INPUT_SIZE = 640  # SCRFD square input, pixels
DETECTOR_SCORE_THRESHOLD = 0.5
DETECTOR_NMS_THRESHOLD = 0.4
RECOGNITION_BATCH_SIZE = 32  # faces per recognizer call when the graph takes a dynamic batch
PROVIDER_ORDER = ("dml", "cuda", "cpu")
# Zero-shot scoring (ClipScore): an open_clip architecture and pretrained tag (or a checkpoint
# file), as the original corpus scripts use, exported once by `facesets clip export` to a folder
# of ONNX towers, tokenizer vocabulary and meta.json (default MODEL_ROOT/clip/onnx/MODEL--TAG);
# weights and custom architecture configs for the export live in the CLIP cache folder.
CLIP_MODEL = "ViT-L-14"
CLIP_PRETRAINED = "dfn2b_s39b"
CLIP_CACHE_SUBDIR = "clip"
CLIP_BATCH_SIZE = 16  # images per image-tower call
CLIP_RETRY_S = 30.0  # a CLIP model that failed to load is tried again after this long

# --- export maintenance (`facesets occlusion`, `dedup-optimize`, `restore`) -------------------

# --- decoding ------------------------------------------------------------------------------
MAX_IMAGE_PIXELS = 120_000_000  # decompression-bomb limit (pixels of the full image)
# Threads one HEIF or AVIF decode may use: the image workers (below) already decode one image
# per core. The photo extensions and formats read live in common/photo_formats.py.
PHOTO_DECODE_THREADS = 1
# Faces are aligned from pixels where the eyes lie at least this far apart, the spacing of
# ArcFace's 112-px template (35 px between eye centres), so the recognizer never upsamples.
ALIGN_EYE_DISTANCE_AT_112 = 35.0


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, as containers and taskset set it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not offered on Windows and macOS
        return max(1, os.cpu_count() or 1)


# Images are decoded, detected, aligned and (on CPU) recognised by this many workers at once;
# each model call runs on its worker's thread alone (ONNX Runtime intra-op threads below),
# which keeps every core busy across images instead of splitting one small convolution.
IMAGE_WORKERS = usable_cores()
# Images being decoded or detected per stream (backpressure), per worker: two keep each worker
# fed while finished images wait to be sent.
IMAGES_IN_FLIGHT_PER_WORKER = 2
IMAGES_IN_FLIGHT_MIN = 16
ORT_INTRA_OP_THREADS = 1

# --- services ------------------------------------------------------------------------------
# Every streaming call holds one RPC thread for as long as it is open, an idle one too; so a
# service runs at most this many streams at once (beyond it a call is answered
# RESOURCE_EXHAUSTED at once) and keeps RPC_THREADS_UNARY more threads that no stream can take,
# for health checks, GetInfo and the other unary calls.
MAX_CONCURRENT_STREAMS = 64
RPC_THREADS_UNARY = 16
# The transport accepts messages up to this many times the per-image byte limit, so that an
# image just over that limit reaches the per-image check and gets an error result of its own
# (the stream goes on); one message beyond the transport limit ends the stream.
TRANSPORT_LIMIT_FACTOR = 2
# Bytes that image decodes may hold at once (estimated from each header); a decode waits until
# the budget has room, and an image whose decode alone needs more is refused.
MAX_DECODE_BYTES = 2 * 1024 * 1024 * 1024
DEFAULT_INFERENCE_ADDRESS = "127.0.0.1:50051"
DEFAULT_CLUSTERING_ADDRESS = "127.0.0.1:50052"
DEFAULT_EXPORT_ADDRESS = "127.0.0.1:50053"
# Timeouts, retries, keepalive and the message limit: facesets.client.defaults (imported above).
SHUTDOWN_GRACE_S = 10.0

# --- clustering (issue: clustering service) -----------------------------------------------
# Sharpness (Face.blur): variance of the Laplacian of Gaussian (sigma SHARPNESS_SIGMA px) of the
# face's gray levels, its box resized to a SHARPNESS_FACE_SIDE px short side; the same face
# scores the same at any resolution (inference/sharpness.py).
SHARPNESS_FACE_SIDE = 112
SHARPNESS_SIGMA = 1.0
LOOKALIKE_CROPS = 4  # crops of each faceset the export lists per look-alike pair
# --- era splits (`facesets age`) -----------------------------------------------------------
AGE_PROBE_THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50)
KNN_NEIGHBOURS = 30
# Neighbour search of cluster, refine and extend (clustering/neighbours.py), through faiss:
# "auto" searches a flat (exact) index below ANN_MIN_FACES faces and an inverted-file index
# (IVF, approximate) from there on; "exact" is the blocked numpy search, "flat" and "ivf" force
# one index. The IVF search keeps each face's ANN_NEIGHBOURS nearest faces within the threshold,
# scanning the ANN_NPROBE of its ANN_NLIST lists nearest to it (0 lists: about 4 sqrt(faces)).
# Clustering's IVF search is a self-join run list by list: the faces probing one list times
# its members is one float32 matrix product of at most ANN_JOIN_BLOCK similarities (BLAS runs
# near peak from a few thousand rows; 4 Mi floats, 16 MiB, keeps the block in cache-friendly
# bounds and memory flat whatever a list's size).
NEIGHBOUR_SEARCH = "auto"
ANN_MIN_FACES = 100_000
ANN_NLIST = 0
ANN_NPROBE = 16
# Faces whose ANN_NEIGHBOURS nearest all lie within the threshold (a large identity spread over
# many lists; 44% of the 200k synthetic store) are searched again over ANN_DENSE_NPROBE lists:
# their share of exact nearest found rises from 0.990 at 16 lists to 0.997 at 64 (bench store
# of 200,000 faces, 1,789 lists, measured on 1,000 sampled faces).
ANN_DENSE_NPROBE = 64
ANN_NEIGHBOURS = 48
ANN_TRAIN_PER_LIST = 32  # k-means sample: faces per list (training is the index's fixed cost)
ANN_QUERY_BATCH = 16_384  # queries per faiss call (probe lists, extend's centroid search)
ANN_JOIN_BLOCK = 1 << 22
ANN_RECALL_QUERIES = 500  # sampled queries whose recall is measured against brute force

# --- identity workflows: `import-folders` and `discover` -------------------------------------
# A hand-sorted folder is flagged as mixing people when its kept faces' largest cluster (at
# the clustering threshold) holds less than this share of them, and the rest at least this many.
IMPORT_MIN_PURITY = 0.8
IMPORT_MIXED_MIN_FACES = 2

# --- export (issue: export service) --------------------------------------------------------
QUALITY_WEIGHTS = {
    "frontality": 0.30,
    "det_score": 0.20,
    "symmetry": 0.20,
    "size": 0.15,
    "sharpness": 0.15,
}
QUALITY_YAW_LIMIT = 60.0  # degrees of yaw at which frontality reaches 0
QUALITY_PITCH_LIMIT = 45.0  # degrees of pitch at which frontality reaches 0
QUALITY_ASYMMETRY_LIMIT = 0.5  # mirror error / inter-ocular distance at which symmetry is 0
QUALITY_SIZE_FULL = 256.0  # face short edge (px) that scores full size; roop swaps at 128
# Sharpness term of the composite: log scale from QUALITY_BLUR_LOW (0) to QUALITY_BLUR_HIGH (1),
# placed so that LFW's faces score about as they did on the earlier measure (median ~0.56).
QUALITY_BLUR_LOW = 2.5
QUALITY_BLUR_HIGH = 100.0
EXPORT_RECROP_PADS = (0.25, 0.1)  # tighter paddings tried when a crop holds != 1 face
EXPORT_DUPLICATE_SIM = 0.95  # embedding cosine similarity of a re-encoded copy (and ...)
EXPORT_DUPLICATE_HASH_BITS = 12  # ... at most this many differing bits of the crop's 64-bit pHash
EXPORT_DUPLICATE_PREFER_LARGER = 1.1  # a copy whose face is this much larger replaces the kept one
EXPORT_REJECTED_SIZE = 256  # side of the review thumbnails of rejected and dropped faces

# --- video targets (`facesets video`; export/media service) ------------------------------------
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm")
VIDEO_SHOT_DETECT_WIDTH = 256  # frames are compared this wide (PySceneDetect's own choice)
# ffmpeg threads of the decode pass. Inference beside it keeps the cores busy, and ffmpeg's own
# threading cost about 1.8x the CPU of one thread for the same frames on a 2-core machine.
VIDEO_DECODE_THREADS = 1
VIDEO_SEND_MAX_SIDE = 1280  # sampled frames are sent at most this long a side (boxes map back)
# The detector sees a sampled frame at the scale where the gate's smallest face (--min-face-short)
# spans this many pixels, never above the service's own size: no time goes to finding faces the
# gate drops. At 22 px a gate-sized face's embedding differs from the full-size detection's no
# more than a 2-pixel shift of the frame makes it differ (mini pack; 1080p frames detect at 544
# instead of 640, 29% less work). Small videos detect at no less than VIDEO_DETECT_MIN_SIZE.
VIDEO_DETECT_FACE_PX = 22
VIDEO_DETECT_MIN_SIZE = 320
VIDEO_JPEG_QUALITY = 92  # sampled frames travel as JPEG, never written to disk
VIDEO_TRACK_REID_SIMILARITY = 0.6  # a face this similar links even without box overlap
VIDEO_SAME_FACE_SIMILARITY = 0.5  # mean embeddings of two tracks of the same face (merging)
VIDEO_CUT_TOLERANCE_S = 0.25  # a clip whose duration is this far off its plan is redone
VIDEO_ACCURATE_CRF = 18  # --accurate re-encodes with libx264 at this quality
EXPORT_CHECK_BATCH = 32  # faces loaded, cropped and checked together (bounds memory)

# --- review report ----------------------------------------------------------------------------
REPORT_THUMB_SIZE = 128  # longest side of the report's JPEG thumbnails, pixels
REPORT_THUMB_QUALITY = 82  # JPEG quality of the thumbnails
REPORT_THUMB_WORKERS = 4  # threads decoding crops and encoding thumbnails (OpenCV frees the GIL)
REPORT_ROW_THUMBS = 8  # best crops shown in a faceset's row of the overview
REPORT_INLINE_ITEMS = 120  # candidates or dropped faces shown on the overview itself up to this
REPORT_THIN_CROPS = 20  # a faceset with fewer kept crops is flagged thin (at most this) ...
REPORT_THIN_FRACTION = 0.25  # ... relative: fewer than this fraction of the median faceset's ...
REPORT_THIN_MIN_CROPS = 3  # ... and never fewer than this (the report shows the figure used)


@dataclass(frozen=True)
class InferenceSettings:
    """What the inference service needs to start; filled from flags and the environment."""

    model_root: Path = field(
        default_factory=lambda: _env_path("FACESETS_MODEL_ROOT", DEFAULT_MODEL_ROOT)
    )
    model_pack: str = field(
        default_factory=lambda: os.environ.get("FACESETS_MODEL_PACK", DEFAULT_MODEL_PACK)
    )
    providers: tuple[str, ...] = PROVIDER_ORDER
    det_size: int = DETECTOR_INPUT_SIZE
    det_threshold: float = DETECTOR_SCORE_THRESHOLD
    max_image_pixels: int = MAX_IMAGE_PIXELS
    recognition_batch: int = RECOGNITION_BATCH_SIZE
    image_workers: int = IMAGE_WORKERS
    intra_op_threads: int = ORT_INTRA_OP_THREADS
    max_decode_bytes: int = MAX_DECODE_BYTES
    clip_model: str = field(
        default_factory=lambda: os.environ.get("FACESETS_CLIP_MODEL", CLIP_MODEL)
    )
    clip_pretrained: str = field(
        default_factory=lambda: os.environ.get("FACESETS_CLIP_PRETRAINED", CLIP_PRETRAINED)
    )
    clip_cache: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["FACESETS_CLIP_CACHE"]).expanduser()
            if os.environ.get("FACESETS_CLIP_CACHE")
            else None
        )
    )  # None: model_root / CLIP_CACHE_SUBDIR
    clip_dir: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["FACESETS_CLIP_DIR"]).expanduser()
            if os.environ.get("FACESETS_CLIP_DIR")
            else None
        )
    )  # an exported CLIP folder; None: CACHE/onnx/MODEL--TAG (where `facesets clip export` writes)

    @property
    def clip_cache_dir(self) -> Path:
        return self.clip_cache or self.model_root / CLIP_CACHE_SUBDIR

    @property
    def images_in_flight(self) -> int:
        return max(IMAGES_IN_FLIGHT_MIN, IMAGES_IN_FLIGHT_PER_WORKER * self.image_workers)


__all__ = [
    "EMBED_INFLIGHT",
    "JOB_RERUNS",
    "KEEPALIVE_MS",
    "MAX_MESSAGE_BYTES",
    "RETRY_ATTEMPTS",
    "RETRY_BACKOFF_MAX_S",
    "RETRY_BACKOFF_S",
    "RETRY_WINDOW_S",
    "RPC_TIMEOUT_S",
    "STORE_COMMIT_BATCH",
    "STREAM_TIMEOUT_S",
]

# --- Immich people (`facesets immich import --people`) -------------------------------------------
# Two named people whose centroids lie this close are one person named twice (refine's merge
# threshold: clusters this close are one identity).
IMMICH_NAMED_TWICE_DISTANCE = 0.40
IMMICH_REFERENCE_FACES = 3  # faces of a person's core shown beside a face that disagrees
IMMICH_CORE_ROUNDS = 5  # re-centring rounds that find the core of a person Immich may have merged
