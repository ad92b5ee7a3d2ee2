"""`facesets export-swap`: the command line of the export job (roop-ready facesets)."""

from __future__ import annotations

import argparse
from pathlib import Path

from facesets.contract.export import ExportSwapParams, ExportSwapRequest
from facesets.orchestrator import stages
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.flags import add_params_flags, params_from_args
from facesets.orchestrator.jobs import print_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    add_params_flags(parser, ExportSwapParams)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "export", "clustering", "inference")


def export_job(args: argparse.Namespace) -> ExportSwapRequest:
    params = params_from_args(ExportSwapParams, args)
    return ExportSwapRequest(
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
