"""The default of every job parameter, in one place: the params classes of the contract read
them, so the services validate, and the CLI shows, the same values.

Defaults follow the original single-script pipeline unless a comment cites the benchmark that
moved them. Service-side limits (workers, batch sizes, index settings) are each service's own
settings, not part of the contract.
"""

from __future__ import annotations

# --- export maintenance (`facesets occlusion`, `dedup-optimize`, `restore`) -------------------
# Zero-shot prompts: a PNG's occlusion probability is the summed probability of the occluding
# prompts; the clear prompt competes with them in the softmax.
OCCLUSION_PROMPTS = ("a face wearing a medical mask", "a face wearing sunglasses")
OCCLUSION_CLEAR_PROMPT = "a clear unobstructed face"
OCCLUSION_THRESHOLD = 0.7  # a PNG at or above this moves to faces/_dropped/
OCCLUSION_FACESET_FRACTION = 0.4  # a faceset with at least this share occluded moves to _masked/
# `facesets dedup-optimize`: PNGs of one faceset at or above this embedding cosine similarity
# collapse to the better-quality one.
DEDUP_OPTIMIZE_SIMILARITY = 0.95

# --- clustering -----------------------------------------------
CLUSTER_THRESHOLD = 0.55  # cosine distance, average linkage
REFINE_MERGE_THRESHOLD = 0.40  # centroid merge of over-split clusters
REFINE_OUTLIER_THRESHOLD = 0.55
REFINE_OUTLIER_MIN_CLUSTER = 4
REFINE_MIN_FACES = 15  # unique photos per faceset
QUALITY_MIN_SHORT = 90  # face short edge, pixels
# Sharpness is Face.blur (inference/sharpness.py). The gate keeps about the share of LFW's faces
# (native size) that the earlier measure's gate of 40 kept (bench/sharpness_bench.py); LFW's
# median face scores ~20, a Gaussian blur of sigma 2 px on such a face ~3.
QUALITY_MIN_BLUR = 4.0  # smallest sharpness the quality gate keeps
QUALITY_MIN_DET_SCORE = 0.6
EXTEND_THRESHOLD = 0.55
# Cannot-link: two faces detected in one photo are two people, so cluster, refine, extend and
# route never put them in one identity (the jobs' `cannot_link` parameter turns it off).
CANNOT_LINK = True
# Look-alike review list of refine: facesets whose centroids lie within the merge threshold
# plus this margin although they share a photo (so the constraint kept them apart).
LOOKALIKE_MARGIN = 0.1

# --- era splits (`facesets age`) -----------------------------------------------------------
AGE_RECOVER_THRESHOLD = 0.55  # wide recovery: store faces this close to the seed centroid
AGE_TIGHTEN_THRESHOLD = 0.50  # after one re-centroid, faces this close stay
AGE_SUB_THRESHOLD = 0.35  # average-linkage sub-clusters (candidate eras)
AGE_JOIN_THRESHOLD = 0.40  # a fragment joins its nearest anchor within this centroid distance
AGE_ANCHOR_MIN_FACES = 20  # sub-clusters this large are anchors; smaller eras are thin
AGE_ERA_YEARS = 5  # a fragment's dominant year within this many years of its anchor's
CONSOLIDATE_CANDIDATE_SIM = 0.55
CONSOLIDATE_CONFIDENT_SIM = 0.65
# Largest component clustered with a dense matrix; larger ones get the exact sparse method,
# which gives the same clusters and is faster past a few hundred faces (bench/clustering_bench).
DENSE_COMPONENT_MAX = 256
NEAR_DUPLICATE_THRESHOLD = 0.08  # cosine distance of whole-image descriptors
NEAR_DUPLICATE_FACE_SIMILARITY = 0.90  # a face two candidate photos share matches this well
NEAR_DUPLICATE_CANDIDATE_DISTANCE = 0.35  # DCT-hash cosine distance: faceless candidate pairs
NEAR_DUPLICATE_MIN_OVERLAP = 0.7  # share of the larger photo the aligned other one covers
NEAR_DUPLICATE_MIN_INLIERS = 10  # ORB matches agreeing on one transform (the pixels decide)

# --- identity workflows: `import-folders` and `discover` -------------------------------------
# A hand-sorted folder's identity: the centroid of its faces, recomputed after dropping the faces
# farther than the first pass, then again after the second (bystanders of group photos go).
IMPORT_FIRST_PASS_THRESHOLD = 0.55
IMPORT_SECOND_PASS_THRESHOLD = 0.45
IMPORT_MATCH_THRESHOLD = 0.45  # a mixed folder's face joins every identity this close
# `discover`: faces this close to an exported faceset's centroid belong to a known person.
DISCOVER_KNOWN_THRESHOLD = 0.45

# --- export --------------------------------------------------------
EXPORT_TOP_N = 30
EXPORT_OUTLIER_THRESHOLD = 0.45
EXPORT_PAD_RATIO = 0.5
EXPORT_OUT_SIZE = 512
EXPORT_MIN_FACE_SHORT = 100
CANDIDATE_MATCH_THRESHOLD = 0.55
CANDIDATE_MIN_SCORE = 0.40

# --- video targets (`facesets video`; export/media service) ------------------------------------
VIDEO_SHOT_THRESHOLD = 27.0  # PySceneDetect ContentDetector threshold (its own default)
VIDEO_MIN_SHOT_S = 0.5  # shortest shot the content detector reports
VIDEO_SAMPLE_FPS = 2.0  # frames sampled per second, on the video's own timeline
VIDEO_MAX_YAW = 75.0  # degrees; a frame's face passes the gate within this yaw ...
VIDEO_MIN_FACE_SHORT = 80.0  # ... with a box short edge of at least this many source pixels ...
VIDEO_MIN_DET_SCORE = 0.5  # ... and at least this detector score
VIDEO_MIN_PASS_RATE = 0.7  # share of a track segment's sampled frames that pass the gate
VIDEO_MIN_SEGMENT_S = 1.0
VIDEO_MAX_SEGMENT_S = 120.0  # longer tracks are cut into pieces of at most this length
VIDEO_MERGE_GAP_S = 2.0  # segments of the same face in one shot closer than this are merged
VIDEO_TRACK_MIN_IOU = 0.2  # box overlap with a track's last box that links a face ...
VIDEO_TRACK_MIN_SIMILARITY = 0.35  # ... when it also looks like the track's face (cosine)
VIDEO_MATCH_THRESHOLD = 0.45  # --match: cosine distance of a track's mean to the centroid

# --- Immich ---------------------------------------------------------
IMMICH_MATCH_THRESHOLD = 0.45
