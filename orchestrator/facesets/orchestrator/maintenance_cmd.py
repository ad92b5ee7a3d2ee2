"""`facesets occlusion|dedup-optimize|merge|restore EXPORT`: maintenance of an export folder.

Every run is recorded in EXPORT/manifest.json and can be put back; nothing is deleted."""

from __future__ import annotations

import argparse
from pathlib import Path

from facesets.contract.export import (
    DedupOptimizeParams,
    DedupOptimizeRequest,
    MergeParams,
    MergeRequest,
    OcclusionParams,
    OcclusionRequest,
    RestoreRequest,
)
from facesets.orchestrator import stages
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.jobs import print_summary

DEFAULTS = OcclusionParams()
DEDUP_DEFAULTS = DedupOptimizeParams()


def _export_dir(args: argparse.Namespace) -> Path:
    export = args.export_dir.expanduser().resolve()
    if not export.is_dir():
        raise ValueError(f"no export folder at {export}")
    return export


def add_occlusion_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "export_dir", metavar="EXPORT", type=Path, help="export folder (holding manifest.json)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULTS.threshold,
        help="a PNG whose occlusion probability (summed over the occluding prompts) is at "
        "least this moves to faces/_dropped/ (default %(default)s)",
    )
    parser.add_argument(
        "--faceset-fraction",
        type=float,
        default=DEFAULTS.faceset_fraction,
        help="a faceset with at least this share of occluded PNGs moves whole to "
        "EXPORT/_masked/ (default %(default)s)",
    )
    parser.add_argument(
        "--prompt",
        action="append",
        dest="prompts",
        help="an occluding prompt (repeatable; default: "
        + "; ".join(f"'{p}'" for p in DEFAULTS.occluded_prompts)
        + ")",
    )
    parser.add_argument(
        "--clear-prompt",
        default=DEFAULTS.clear_prompt,
        help="the prompt of an unobstructed face (default '%(default)s')",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--dry-run", action="store_true", help="report what would move; move none")
    action.add_argument("--undo", action="store_true", help="put back what the last run moved")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "export", "inference")


def run_occlusion(args: argparse.Namespace) -> int:
    params = OcclusionParams(
        threshold=args.threshold,
        faceset_fraction=args.faceset_fraction,
        occluded_prompts=tuple(args.prompts) if args.prompts else DEFAULTS.occluded_prompts,
        clear_prompt=args.clear_prompt,
        dry_run=args.dry_run,
    )
    job = OcclusionRequest(_export_dir(args), params, undo=args.undo)
    with services(args, job.roots()) as opened:
        summary = stages.occlusion(opened, job)
    print_summary(summary.as_dict(), args.json)
    return 0


def add_dedup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "export_dir", metavar="EXPORT", type=Path, help="export folder (holding manifest.json)"
    )
    parser.add_argument(
        "--similarity",
        type=float,
        default=DEDUP_DEFAULTS.near_duplicate_similarity,
        help="PNGs of one faceset at or above this embedding cosine similarity collapse to the "
        "better-quality one (default %(default)s)",
    )
    parser.add_argument("--dry-run", action="store_true", help="report what would move; move none")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "export", "inference")


def run_dedup(args: argparse.Namespace) -> int:
    params = DedupOptimizeParams(near_duplicate_similarity=args.similarity, dry_run=args.dry_run)
    job = DedupOptimizeRequest(_export_dir(args), params)
    with services(args, job.roots()) as opened:
        summary = stages.dedup_optimize(opened, job)
    print_summary(summary.as_dict(), args.json)
    return 0


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "export_dir", metavar="EXPORT", type=Path, help="export folder (holding manifest.json)"
    )
    parser.add_argument("faceset", help="the faceset that goes (faceset_NNN)")
    parser.add_argument(
        "--into", required=True, metavar="TARGET", help="the faceset it joins (faceset_NNN)"
    )
    parser.add_argument("--dry-run", action="store_true", help="report what would move; move none")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "export")


def run_merge(args: argparse.Namespace) -> int:
    params = MergeParams(args.faceset, args.into, dry_run=args.dry_run)
    job = MergeRequest(_export_dir(args), params)
    with services(args, job.roots()) as opened:
        summary = stages.merge(opened, job)
    print_summary(summary.as_dict(), args.json)
    return 0


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "export_dir", metavar="EXPORT", type=Path, help="export folder (holding manifest.json)"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", dest="run_id", help="a run id from manifest.json maintenance_runs")
    which.add_argument("--faceset", help="put back every move of this faceset, whatever run")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "export")


def run_restore(args: argparse.Namespace) -> int:
    job = RestoreRequest(_export_dir(args), args.run_id or "", args.faceset or "")
    with services(args, job.roots()) as opened:
        summary = stages.restore(opened, job)
    print_summary(summary.as_dict(), args.json)
    return 0


COMMANDS = {
    "occlusion": (
        "move PNGs of occluded faces (masks, sunglasses, hands) aside, scored by CLIP: each to "
        "its faceset's faces/_dropped/, mostly occluded facesets to EXPORT/_masked/; .fsz rebuilt",
        add_occlusion_arguments,
        run_occlusion,
    ),
    "dedup-optimize": (
        "drop byte copies across facesets, PNGs with a face count other than 1 (re-detected) and "
        "near-duplicates within a faceset, each to its faces/_dropped/; .fsz rebuilt",
        add_dedup_arguments,
        run_dedup,
    ),
    "merge": (
        "merge a faceset into another (one person in two facesets): its PNGs join the target's "
        "faces/, the target's .fsz are rebuilt, the source folder goes to EXPORT/_merged/",
        add_merge_arguments,
        run_merge,
    ),
    "restore": (
        "put back what a maintenance run moved (--run ID) or every move of a faceset (--faceset)",
        add_restore_arguments,
        run_restore,
    ),
}
