"""`facesets cluster|refine|extend|dedup|consolidate`: the command lines of the clustering jobs.

Each command turns its flags into a typed request for the stage API (stages.py); flag defaults
are read from the jobs' parameters classes, whose defaults come from settings.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facesets.clustering.params import (
    ClusterParams,
    ConsolidateParams,
    DedupParams,
    ExtendParams,
    RefineParams,
)
from facesets.common.gates import explain_empty
from facesets.common.params import LINK_MODE_HELP, LinkMode
from facesets.orchestrator import hints, stages
from facesets.orchestrator.connect import add_service_arguments, services


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return
    for line in stages.StageSummary("", summary).lines():
        print(line)
    if explanation := explain_empty(summary):
        print(explanation)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "clustering")


def add_link_mode_argument(parser: argparse.ArgumentParser, keep: bool = False) -> None:
    parser.add_argument(
        "--link-mode",
        choices=[mode.value for mode in LinkMode],
        default=LinkMode.AUTO.value,
        help=LINK_MODE_HELP + ("; auto keeps the mode each output was made with" if keep else ""),
    )


def add_cannot_link_argument(parser: argparse.ArgumentParser, default: bool) -> None:
    """`--allow-same-photo`: turn off the cannot-link constraint (default from the params)."""
    parser.add_argument(
        "--allow-same-photo",
        dest="allow_same_photo",
        action="store_true",
        default=not default,
        help="let two faces of one photo join one identity (by default they never do: two "
        "faces in one photo are two people; the manifest counts the merges this prevented)",
    )


def _float_flags(
    parser: argparse.ArgumentParser, defaults: object, flags: tuple[tuple[str, str], ...]
) -> None:
    """Float flags named after their parameter, each defaulting to the parameters object's."""
    for name, text in flags:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=float,
            default=getattr(defaults, name),
            help=f"{text} (default %(default)s)",
        )


# --- cluster -------------------------------------------------------------------------------
def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store written by `facesets embed`")
    parser.add_argument(
        "out", type=Path, help="output folder: person_NNN/, _singletons/, _noface/, manifest.json"
    )
    _float_flags(
        parser, ClusterParams(), (("threshold", "cosine distance cut of average linkage"),)
    )
    add_link_mode_argument(parser)
    add_cannot_link_argument(parser, ClusterParams().cannot_link)
    _common(parser)


def cluster_job(args: argparse.Namespace) -> stages.ClusterJob:
    params = ClusterParams(
        threshold=args.threshold,
        link_mode=LinkMode(args.link_mode),
        cannot_link=not args.allow_same_photo,
    )
    return stages.ClusterJob(args.store, args.out, params)


# --- refine --------------------------------------------------------------------------------
REFINE_FLAGS = (
    ("initial_threshold", "cosine distance of the first clustering"),
    ("merge_threshold", "centroid distance that merges clusters"),
    ("outlier_threshold", "distance to centroid that rejects"),
    ("min_short", "smallest face short edge, pixels"),
    ("min_blur", "smallest Laplacian variance of the face"),
    ("min_det_score", "smallest detector score"),
)


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store written by `facesets embed`")
    parser.add_argument(
        "out", type=Path, help="output folder: faceset_NNN/ and refine_manifest.json"
    )
    defaults = RefineParams()
    _float_flags(parser, defaults, REFINE_FLAGS)
    parser.add_argument(
        "--min-faces",
        type=int,
        default=defaults.min_faces,
        help="unique photos a faceset needs (default %(default)s)",
    )
    add_link_mode_argument(parser)
    add_cannot_link_argument(parser, defaults.cannot_link)
    _common(parser)


def refine_job(args: argparse.Namespace) -> stages.RefineJob:
    params = RefineParams(
        **{name: getattr(args, name) for name, _ in REFINE_FLAGS},
        min_faces=args.min_faces,
        link_mode=LinkMode(args.link_mode),
        cannot_link=not args.allow_same_photo,
    )
    return stages.RefineJob(args.store, args.out, params)


# --- extend --------------------------------------------------------------------------------
def add_extend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store, grown since the last cluster run")
    parser.add_argument("raw_out", type=Path, help="output folder of `facesets cluster`")
    parser.add_argument("--refine-out", type=Path, help="output folder of `facesets refine`")
    _float_flags(parser, ExtendParams(), (("threshold", "largest distance to a known centroid"),))
    add_link_mode_argument(parser, keep=True)
    add_cannot_link_argument(parser, ExtendParams().cannot_link)
    _common(parser)


def extend_job(args: argparse.Namespace) -> stages.ExtendJob:
    mode = LinkMode(args.link_mode)
    params = ExtendParams(
        threshold=args.threshold,
        link_mode=None if mode is LinkMode.AUTO else mode,
        cannot_link=not args.allow_same_photo,
    )
    return stages.ExtendJob(args.store, args.raw_out, args.refine_out, params)


# --- dedup ---------------------------------------------------------------------------------
def add_dedup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store; writes STORE.duplicates.json")
    _float_flags(
        parser,
        DedupParams(),
        (("near_threshold", "descriptor distance of visual near-duplicates"),),
    )
    _common(parser)


def dedup_job(args: argparse.Namespace) -> stages.DedupJob:
    return stages.DedupJob(args.store, DedupParams(near_threshold=args.near_threshold))


# --- consolidate ---------------------------------------------------------------------------
def add_consolidate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("facesets_dir", type=Path, help="output folder of `facesets refine`")
    parser.add_argument("store", type=Path, help="face store the facesets came from")
    _float_flags(
        parser,
        ConsolidateParams(),
        (
            ("candidate_similarity", "centroid similarity reported as a candidate"),
            ("confident_similarity", "centroid similarity merged"),
        ),
    )
    parser.add_argument("--undo", action="store_true", help="restore the facesets merged before")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report candidates and merges without changing anything",
    )
    _common(parser)


def consolidate_job(args: argparse.Namespace) -> stages.ConsolidateJob:
    params = ConsolidateParams(
        candidate_similarity=args.candidate_similarity,
        confident_similarity=args.confident_similarity,
        undo=args.undo,
        dry_run=args.dry_run,
    )
    return stages.ConsolidateJob(args.facesets_dir, args.store, params)


def _runner(make_job: Callable[[argparse.Namespace], stages.ClusteringJob]) -> Any:
    def run(args: argparse.Namespace) -> int:
        job = make_job(args)  # parameters are checked before any service starts
        hints.require_store(job.store, getattr(job.params, "dry_run", False))
        with services(args, job.roots()) as opened:
            summary = stages.clustering_job(opened, job)
        print_summary(summary.as_dict(), args.json)
        return 0

    return run


COMMANDS = {
    "cluster": (
        "cluster all faces into person folders",
        add_cluster_arguments,
        _runner(cluster_job),
    ),
    "refine": (
        "build clean facesets: cluster, merge, quality gates, outliers, size",
        add_refine_arguments,
        _runner(refine_job),
    ),
    "extend": (
        "fold new faces into existing person / faceset folders without renumbering",
        add_extend_arguments,
        _runner(extend_job),
    ),
    "dedup": (
        "find byte-identical and visually near-duplicate photos",
        add_dedup_arguments,
        _runner(dedup_job),
    ),
    "consolidate": (
        "merge facesets that hold the same person (reversible with --undo)",
        add_consolidate_arguments,
        _runner(consolidate_job),
    ),
}
