"""`facesets export-swap`: roop-ready facesets through the export service."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facesets.common import settings
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.jobs import follow, print_summary
from facesets.v1 import export_pb2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = settings
    parser.add_argument("store", type=Path, help="face store")
    parser.add_argument(
        "refine_manifest", type=Path, help="refine_manifest.json of `facesets refine`"
    )
    parser.add_argument("out", type=Path, help="export folder (its manifest.json is merged)")
    parser.add_argument(
        "--raw-manifest",
        type=Path,
        help="manifest.json of `facesets cluster` (needed by --candidates)",
    )
    parser.add_argument(
        "--candidates",
        action="store_true",
        help="rescue singletons near a faceset into OUT/_candidates for review",
    )
    parser.add_argument(
        "--top-n",
        type=int,
        default=s.EXPORT_TOP_N,
        help="crops in the _topN bundle (default %(default)s)",
    )
    for flag, default, text in (
        ("--outlier-threshold", s.EXPORT_OUTLIER_THRESHOLD, "distance to centroid that rejects"),
        ("--pad-ratio", s.EXPORT_PAD_RATIO, "padding around the face box, of its side"),
        ("--min-face-short", s.EXPORT_MIN_FACE_SHORT, "smallest face short edge, pixels"),
        (
            "--candidate-match-threshold",
            s.CANDIDATE_MATCH_THRESHOLD,
            "largest distance of a candidate to a faceset centroid",
        ),
        ("--candidate-min-score", s.CANDIDATE_MIN_SCORE, "smallest quality score of a candidate"),
    ):
        parser.add_argument(flag, type=float, default=default, help=f"{text} (default %(default)s)")
    parser.add_argument(
        "--out-size",
        type=int,
        default=s.EXPORT_OUT_SIZE,
        help="side of the square PNG crops (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "export", "clustering", "inference")


def export_swap(
    opened: Services, args: argparse.Namespace, show_progress: bool = True
) -> dict[str, Any]:
    if args.candidates and not args.raw_manifest:
        raise ValueError("--candidates needs --raw-manifest")
    request = export_pb2.ExportSwapRequest(
        store=str(args.store.resolve()),
        refine_manifest=str(args.refine_manifest.resolve()),
        out=str(args.out.resolve()),
        raw_manifest=str(args.raw_manifest.resolve()) if args.raw_manifest else "",
        candidates=args.candidates,
        top_n=args.top_n,
        outlier_threshold=args.outlier_threshold,
        pad_ratio=args.pad_ratio,
        out_size=args.out_size,
        min_face_short=args.min_face_short,
        candidate_match_threshold=args.candidate_match_threshold,
        candidate_min_score=args.candidate_min_score,
        clustering_address=opened.address("clustering"),
        inference_address=opened.address("inference"),
    )
    summary = follow(opened.export().export_swap(request), show_progress)
    report = follow(opened.export().report(str(args.out.resolve())), show_progress)
    return {**summary, **report}


def run(args: argparse.Namespace) -> int:
    with services(args) as opened:
        summary = export_swap(opened, args)
    print_summary(summary, args.json)
    return 0


COMMANDS = {
    "export-swap": (
        "export roop-ready facesets: square one-face PNG crops, .fsz "
        "bundles, manifests and a review report",
        add_arguments,
        run,
    )
}
