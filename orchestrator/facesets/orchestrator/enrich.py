"""`facesets enrich STORE`: fill landmarks, pose and sharpness of stored faces that lack them.

Faces stored by a pack without landmark models (or before pose existed) get what the current
inference service can give; faces measured with the earlier, size-dependent sharpness are
measured again (each once: the store records which measure a face holds). Only faces still
lacking something are sent, so an interrupted run resumes where it stopped and a finished one
does nothing.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facesets.client import ImageInput
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.v1 import clustering_pb2, common_pb2, inference_pb2

MIN_IOU = 0.5  # a re-detected face is the stored one when their boxes overlap this much


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def lacking(face: common_pb2.Face, info: inference_pb2.ModelInfo) -> bool:
    if not face.HasField("pose") or face.blur_measure < common_pb2.BLUR_MEASURE_CANONICAL:
        return True
    if info.has_landmark_2d_106 and not face.landmark_2d_106:
        return True
    return bool(
        info.has_landmark_3d_68 and face.pose.source != common_pb2.POSE_SOURCE_LANDMARK_3D68
    )


def enrich(opened: Services, store_path: Path, show_progress: bool = True) -> dict[str, Any]:
    store = str(Path(store_path).resolve())
    clustering = opened.clustering()
    clustering.open_store(store)
    info = opened.inference().info()
    by_image: dict[str, list[clustering_pb2.FaceRecord]] = defaultdict(list)
    for record in clustering.read_faces(store, with_embeddings=False):
        if lacking(record.face, info):
            by_image[record.sha256].append(record)
    summary = {
        "faces_lacking": sum(map(len, by_image.values())),
        "faces_earlier_sharpness": sum(
            r.face.blur_measure < common_pb2.BLUR_MEASURE_CANONICAL
            for rs in by_image.values()
            for r in rs
        ),
        "images": len(by_image),
        "faces_updated": 0,
        "faces_not_found": 0,
        "image_errors": 0,
    }
    if not by_image:
        return summary
    images = (ImageInput(id=sha, path=records[0].path) for sha, records in by_image.items())
    by_path = opened.is_local("inference")

    def updates() -> Iterator[clustering_pb2.FaceUpdate]:
        with tqdm(
            total=len(by_image), desc="enriching", unit="img", disable=not show_progress
        ) as bar:
            for result in opened.inference().detect(images, by_path=by_path):
                bar.update()
                if result.HasField("error"):
                    summary["image_errors"] += 1
                    continue
                for record in by_image[result.id]:
                    stored = np.asarray(record.face.bbox)
                    best = max(
                        result.faces, key=lambda f: _iou(stored, np.asarray(f.bbox)), default=None
                    )
                    if best is None or _iou(stored, np.asarray(best.bbox)) < MIN_IOU:
                        summary["faces_not_found"] += 1
                        continue
                    summary["faces_updated"] += 1
                    yield clustering_pb2.FaceUpdate(store=store, face_id=record.face_id, face=best)

    clustering.update_faces(updates())
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store written by `facesets embed`")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "inference", "clustering")


def run(args: argparse.Namespace) -> int:
    with services(args) as opened:
        summary = enrich(opened, args.store)
    print(
        json.dumps(summary, indent=2)
        if args.json
        else "\n".join(f"{k:<18} {v}" for k, v in summary.items())
    )
    return 0


COMMANDS = {
    "enrich": (
        "fill 106-point landmarks, pose and sharpness of faces that lack them",
        add_arguments,
        run,
    )
}
