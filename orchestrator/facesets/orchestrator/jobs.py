"""`facesets cluster|refine|extend|dedup|consolidate`: the command lines of the clustering jobs.

Each command turns its flags into a typed request of the contract; the flags themselves are
built from the jobs' parameters classes (flags.py), which declare each one's default, range and
help text.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facesets.contract.clustering import (
    ClusteringJobRequest,
    ClusterParams,
    ClusterRequest,
    ConsolidateParams,
    ConsolidateRequest,
    DedupParams,
    DedupRequest,
    ExtendParams,
    ExtendRequest,
    RefineParams,
    RefineRequest,
)
from facesets.contract.gates import explain_empty
from facesets.orchestrator import hints, stages
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.flags import add_params_flags, params_from_args


def print_summary(summary: dict[str, object], as_json: bool) -> None:
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


# Service-side tuning a command line does not offer.
NOT_FLAGS = ("dense_max",)


# --- cluster -------------------------------------------------------------------------------
def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store written by `facesets embed`")
    parser.add_argument(
        "out", type=Path, help="output folder: person_NNN/, _singletons/, _noface/, manifest.json"
    )
    add_params_flags(parser, ClusterParams, skip=NOT_FLAGS)
    _common(parser)


def cluster_job(args: argparse.Namespace) -> ClusterRequest:
    return ClusterRequest(args.store, args.out, params_from_args(ClusterParams, args, NOT_FLAGS))


# --- refine --------------------------------------------------------------------------------
def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store written by `facesets embed`")
    parser.add_argument(
        "out", type=Path, help="output folder: faceset_NNN/ and refine_manifest.json"
    )
    add_params_flags(parser, RefineParams)
    _common(parser)


def refine_job(args: argparse.Namespace) -> RefineRequest:
    return RefineRequest(args.store, args.out, params_from_args(RefineParams, args))


# --- extend --------------------------------------------------------------------------------
def add_extend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store, grown since the last cluster run")
    parser.add_argument("raw_out", type=Path, help="output folder of `facesets cluster`")
    parser.add_argument("--refine-out", type=Path, help="output folder of `facesets refine`")
    add_params_flags(parser, ExtendParams, keep_link_mode=True)
    _common(parser)


def extend_job(args: argparse.Namespace) -> ExtendRequest:
    params = params_from_args(ExtendParams, args)
    return ExtendRequest(args.store, args.raw_out, args.refine_out, params)


# --- dedup ---------------------------------------------------------------------------------
def add_dedup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store; writes STORE.duplicates.json")
    add_params_flags(parser, DedupParams)
    _common(parser)


def dedup_job(args: argparse.Namespace) -> DedupRequest:
    return DedupRequest(args.store, params_from_args(DedupParams, args))


# --- consolidate ---------------------------------------------------------------------------
def add_consolidate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("facesets_dir", type=Path, help="output folder of `facesets refine`")
    parser.add_argument("store", type=Path, help="face store the facesets came from")
    add_params_flags(parser, ConsolidateParams, keep_link_mode=True)
    _common(parser)


def consolidate_job(args: argparse.Namespace) -> ConsolidateRequest:
    params = params_from_args(ConsolidateParams, args)
    return ConsolidateRequest(args.facesets_dir, args.store, params)


def _runner(make_job: Callable[[argparse.Namespace], ClusteringJobRequest]) -> Any:
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
