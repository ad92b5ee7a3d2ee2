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
import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from facesets.client import ImageInput
from facesets.client.files import open_regular
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
        "images_changed": 0,
    }
    if not lacking:
        return summary
    by_path = opened.is_local("inference")
    changed: list[str] = []
    with progress_bar(
        total=len(lacking), desc="enriching", unit="img", disable=not show_progress
    ) as bar:

        def skip(path: str) -> None:
            changed.append(path)
            bar.update()

        images = _unchanged(lacking, by_path, skip)

        def detected() -> Iterator[common_pb2.ImageResult]:
            for result in opened.inference().detect(images, by_path=by_path):
                bar.update()
                yield result

        written = clustering.enrich_faces(target, detected())
    summary["faces_updated"] = written.faces_updated
    summary["faces_not_found"] = written.faces_not_found
    summary["image_errors"] = written.image_errors
    summary["images_changed"] = len(changed)
    for path in changed[:CHANGED_SHOWN]:
        print(
            f"changed {path}  (not the photo embedded; its faces left as they were)",
            file=sys.stderr,
        )
    if len(changed) > CHANGED_SHOWN:
        print(f"... and {len(changed) - CHANGED_SHOWN} more changed photos", file=sys.stderr)
    if changed:
        print(
            "their faces keep what they had: run `facesets embed` on their folder again",
            file=sys.stderr,
        )
    return summary


CHANGED_SHOWN = 20  # changed photos named on stderr


def _unchanged(
    lacking: Sequence[clustering_pb2.LackingImage], by_path: bool, skip: Callable[[str], None]
) -> Iterator[ImageInput]:
    """The images to re-detect, each only while its file still holds the photo the store
    embedded (its sha256): a photo replaced or edited since would hand its faces' landmarks,
    pose and sharpness to the stored faces whose boxes it happens to overlap. Sent as bytes,
    a file is read once, checked and sent; by path, it is checked just before the service
    reads it. A file that cannot be read is sent as before, so that its error is reported."""
    for image in lacking:
        try:
            with open_regular(image.path) as handle:
                data = handle.read()
        except OSError:
            yield ImageInput(id=image.sha256, path=image.path)
            continue
        if hashlib.sha256(data).hexdigest() != image.sha256:
            skip(image.path)
        elif by_path:
            yield ImageInput(id=image.sha256, path=image.path)
        else:
            yield ImageInput(id=image.sha256, data=data)


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
