"""Enrich: which stored faces lack landmarks or pose, and which re-detected face each one is.

The orchestrator re-detects the images through the inference service; matching the detections
to the stored faces (by box overlap) and writing them happens here, next to the store.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from facesets.clustering.convert import face_from_proto
from facesets.clustering.store import FaceData, FaceStore
from facesets.common import settings
from facesets.common.vectors import iou
from facesets.v1 import common_pb2

MIN_IOU = 0.5  # a re-detected face is the stored one when their boxes overlap this much


@dataclass(frozen=True)
class Capabilities:
    """What the inference service gives now, beyond pose from keypoints."""

    landmark_2d_106: bool
    landmark_3d_68: bool


@dataclass(frozen=True)
class StoredFace:
    face_id: int
    path: str
    bbox: tuple[float, float, float, float]
    earlier_sharpness: bool = False


@dataclass
class EnrichCounts:
    faces_updated: int = 0
    faces_not_found: int = 0
    image_errors: int = 0


def is_lacking(row: sqlite3.Row, can: Capabilities) -> bool:
    """No pose yet, sharpness of the earlier size-dependent measure, or less than the current
    models give."""
    if row["yaw"] is None or earlier_sharpness(row):
        return True
    if can.landmark_2d_106 and not row["landmark_2d_106"]:
        return True
    return can.landmark_3d_68 and row["pose_source"] != common_pb2.POSE_SOURCE_LANDMARK_3D68


def earlier_sharpness(row: sqlite3.Row) -> bool:
    return bool(row["blur_measure"] < common_pb2.BLUR_MEASURE_CANONICAL)


def lacking_faces(store: FaceStore, can: Capabilities) -> dict[str, list[StoredFace]]:
    """sha256 -> the image's faces that lack something, images in first-face order."""
    found: dict[str, list[StoredFace]] = defaultdict(list)
    for row in store.iter_face_rows(with_embeddings=False):
        if is_lacking(row, can):
            bbox = (row["x1"], row["y1"], row["x2"], row["y2"])
            found[row["sha256"]].append(
                StoredFace(row["face_id"], row["path"], bbox, earlier_sharpness(row))
            )
    return dict(found)


def best_match(stored: StoredFace, detections: Sequence[common_pb2.Face]) -> common_pb2.Face | None:
    """The detection overlapping the stored box most, when it overlaps at least MIN_IOU."""
    best = max(detections, key=lambda face: iou(stored.bbox, face.bbox), default=None)
    if best is None or iou(stored.bbox, best.bbox) < MIN_IOU:
        return None
    return best


def enrich_faces(
    store: FaceStore, can: Capabilities, detected: Iterable[common_pb2.ImageResult]
) -> EnrichCounts:
    """Write the matching detection's landmarks and pose onto each lacking face of each image;
    committed in batches, so an interrupted run keeps what it wrote and a re-run skips it."""
    lacking = lacking_faces(store, can)
    counts = EnrichCounts()
    pending: list[tuple[int, FaceData]] = []
    for result in detected:
        if result.HasField("error"):
            counts.image_errors += 1
            continue
        for stored in lacking.pop(result.id, []):
            match = best_match(stored, result.faces)
            if match is None:
                counts.faces_not_found += 1
                continue
            counts.faces_updated += 1
            pending.append((stored.face_id, face_from_proto(match)))
        if len(pending) >= settings.clustering().store.commit_batch:
            store.update_faces(pending)
            pending = []
    if pending:
        store.update_faces(pending)
    return counts
