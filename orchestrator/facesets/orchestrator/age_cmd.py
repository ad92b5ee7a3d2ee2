"""`facesets age probe|split|extend EXPORT FACESET`: era splits of an identity that spans years.

`probe` reports whether the faceset sorts by capture year; `split` writes its era buckets into
the export (EXPORT/<faceset>_era_NN/, thin ones under EXPORT/_thin/); `extend` slots faces added
to the store since into those buckets without renumbering them. Flag defaults come from the
jobs' parameters classes (AgeProbeParams, AgeSplitParams).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from facesets.contract import layout
from facesets.contract.clustering import (
    AgeProbeParams,
    AgeProbeRequest,
    AgeSplitParams,
    AgeSplitRequest,
)
from facesets.contract.export import ExportSwapParams
from facesets.orchestrator import hints, stages
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.flags import add_params_flags, params_from_args
from facesets.orchestrator.jobs import print_summary

# The export's own gates on each era's crops (as `facesets export-swap` takes them).
EXPORT_FLAGS = ("top_n", "outlier_threshold", "min_face_short")
EXPORT_SKIP = tuple(f.name for f in fields(ExportSwapParams) if f.name not in EXPORT_FLAGS)


def _positional(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "export_dir", metavar="EXPORT", type=Path, help="export folder of `facesets export-swap`"
    )
    parser.add_argument("faceset", help="faceset of the export: faceset_NNN or NNN")
    parser.add_argument(
        "--store",
        type=Path,
        help="face store the export was made from (default: faces.db beside EXPORT, "
        "as `facesets run` lays it out)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _store(args: argparse.Namespace) -> Path:
    if args.store is not None:
        return Path(args.store)
    beside = Path(args.export_dir).absolute().parent / layout.RUN_STORE
    if not beside.is_file():
        raise SystemExit(f"no store given and none at {beside}; pass --store STORE")
    return beside


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    _positional(parser)
    add_params_flags(parser, AgeProbeParams)
    add_service_arguments(parser, "clustering")


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    _positional(parser)
    add_params_flags(parser, AgeSplitParams)
    add_params_flags(parser.add_argument_group("era export"), ExportSwapParams, EXPORT_SKIP)
    add_service_arguments(parser, "export", "clustering", "inference")


def probe_job(args: argparse.Namespace) -> AgeProbeRequest:
    params = params_from_args(AgeProbeParams, args)
    return AgeProbeRequest(_store(args), args.export_dir, args.faceset, params)


def split_job(args: argparse.Namespace, extend: bool) -> AgeSplitRequest:
    params = params_from_args(AgeSplitParams, args)
    return AgeSplitRequest(_store(args), args.export_dir, args.faceset, extend, params)


def run_probe(args: argparse.Namespace) -> int:
    job = probe_job(args)
    hints.require_store(job.store)
    with services(args, job.roots()) as opened:
        summary = stages.clustering_job(opened, job)
    print_summary(summary.as_dict(), args.json)
    if not args.json:
        print(f"verdict: {summary['verdict']} ({summary['why']})")
    return 0


def _run_split(args: argparse.Namespace, extend: bool) -> int:
    job = split_job(args, extend)
    hints.require_store(job.store, job.params.dry_run)
    export = params_from_args(ExportSwapParams, args, EXPORT_SKIP)
    with services(args, job.roots()) as opened:
        summary = stages.age_split(opened, job, export)
    print_summary(summary.as_dict(), args.json)
    if extend:
        plan = layout.era_plan_path(job.export_dir, summary.get("faceset") or job.faceset)
        hints.say(hints.age_extend(summary.values, plan))
    return 0


def run_split(args: argparse.Namespace) -> int:
    return _run_split(args, extend=False)


def run_extend(args: argparse.Namespace) -> int:
    return _run_split(args, extend=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    steps = parser.add_subparsers(dest="age_step", metavar="STEP", required=True)
    for name, help_text, add, handler in (
        ("probe", "whether a faceset sorts by capture year", add_probe_arguments, run_probe),
        (
            "split",
            "split a faceset into era buckets inside the export",
            add_split_arguments,
            run_split,
        ),
        (
            "extend",
            "slot new faces into a faceset's era buckets (nothing renumbered)",
            add_split_arguments,
            run_extend,
        ),
    ):
        sub = steps.add_parser(name, help=help_text, description=help_text)
        add(sub)
        sub.set_defaults(age_run=handler)


def run(args: argparse.Namespace) -> int:
    return int(args.age_run(args))


COMMANDS = {
    "age": (
        "era splits of an identity spanning years: `probe`, `split`, `extend`",
        add_arguments,
        run,
    )
}
