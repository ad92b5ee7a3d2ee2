"""`facesets enrich STORE`: fill landmarks, pose and sharpness of stored faces that lack them.

Faces stored by a pack without landmark models (or before pose existed) get what the current
inference service can give; faces measured with the earlier, size-dependent sharpness are
measured again (each once: the store records which measure a face holds). Only faces still
lacking something are sent, so an interrupted run resumes where it stopped and a finished one
does nothing. The matching of detections to stored faces runs in the clustering service
(LackingFaces, EnrichFaces); this module only sequences.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from facesets.client import ImageInput
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.console import progress_bar
from facesets.v1 import clustering_pb2, common_pb2


def enrich(opened: Services, store_path: Path, show_progress: bool = True) -> dict[str, int]:
    """Sequence the two services: the clustering service names the images with faces lacking
    what the inference service gives now, inference re-detects them, and the clustering service
    matches the detections to the stored faces and writes them."""
    store = str(Path(store_path).resolve())
    clustering = opened.clustering()
    clustering.open_store(store)
    info = opened.inference().info()
    target = clustering_pb2.EnrichTarget(
        store=store,
        has_landmark_2d_106=info.has_landmark_2d_106,
        has_landmark_3d_68=info.has_landmark_3d_68,
    )
    lacking = clustering.lacking_faces(target)
    summary = {
        "faces_lacking": sum(image.faces_lacking for image in lacking),
        "faces_earlier_sharpness": sum(image.faces_earlier_sharpness for image in lacking),
        "images": len(lacking),
        "faces_updated": 0,
        "faces_not_found": 0,
        "image_errors": 0,
    }
    if not lacking:
        return summary
    images = (ImageInput(id=image.sha256, path=image.path) for image in lacking)
    by_path = opened.is_local("inference")
    with progress_bar(
        total=len(lacking), desc="enriching", unit="img", disable=not show_progress
    ) as bar:

        def detected() -> Iterator[common_pb2.ImageResult]:
            for result in opened.inference().detect(images, by_path=by_path):
                bar.update()
                yield result

        written = clustering.enrich_faces(target, detected())
    summary["faces_updated"] = written.faces_updated
    summary["faces_not_found"] = written.faces_not_found
    summary["image_errors"] = written.image_errors
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store written by `facesets embed`")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "inference", "clustering")


def run(args: argparse.Namespace) -> int:
    with services(args, [args.store]) as opened:
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
