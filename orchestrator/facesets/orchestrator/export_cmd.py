"""`facesets export-swap`: the command line of the export job (roop-ready facesets)."""

from __future__ import annotations

import argparse
from pathlib import Path

from facesets.export.params import ExportSwapParams
from facesets.orchestrator import stages
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.jobs import print_summary

FLOAT_FLAGS = (
    ("outlier_threshold", "distance to centroid that rejects"),
    ("pad_ratio", "padding around the face box, of its side"),
    ("min_face_short", "smallest face short edge, pixels"),
    ("candidate_match_threshold", "largest distance of a candidate to a faceset centroid"),
    ("candidate_min_score", "smallest quality score of a candidate"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ExportSwapParams()
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
        default=defaults.top_n,
        help="crops in the _topN bundle (default %(default)s)",
    )
    for name, text in FLOAT_FLAGS:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=float,
            default=getattr(defaults, name),
            help=f"{text} (default %(default)s)",
        )
    parser.add_argument(
        "--out-size",
        type=int,
        default=defaults.out_size,
        help="side of the square PNG crops (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "export", "clustering", "inference")


def export_job(args: argparse.Namespace) -> stages.ExportJob:
    params = ExportSwapParams(
        top_n=args.top_n,
        out_size=args.out_size,
        **{name: getattr(args, name) for name, _ in FLOAT_FLAGS},
    )
    return stages.ExportJob(
        args.store, args.refine_manifest, args.out, args.raw_manifest, args.candidates, params
    )


def run(args: argparse.Namespace) -> int:
    job = export_job(args)  # parameters are checked before any service starts
    with services(args, job.roots()) as opened:
        summary = stages.export_swap(opened, job)
    print_summary(summary.as_dict(), args.json)
    return 0


COMMANDS = {
    "export-swap": (
        "export roop-ready facesets: square one-face PNG crops, .fsz "
        "bundles, manifests and a review report",
        add_arguments,
        run,
    )
}
