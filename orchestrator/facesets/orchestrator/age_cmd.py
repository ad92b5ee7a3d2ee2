"""`facesets age probe|split|extend EXPORT FACESET`: era splits of an identity that spans years.

`probe` reports whether the faceset sorts by capture year; `split` writes its era buckets into
the export (EXPORT/<faceset>_era_NN/, thin ones under EXPORT/_thin/); `extend` slots faces added
to the store since into those buckets without renumbering them. Flag defaults come from the
jobs' parameters classes (AgeProbeParams, AgeSplitParams).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facesets.clustering.params import AgeProbeParams, AgeSplitParams
from facesets.common import layout
from facesets.export.params import ExportSwapParams
from facesets.orchestrator import hints, stages
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.jobs import print_summary

SPLIT_FLOATS = (
    ("recover_threshold", "wide recovery: largest distance to the seed centroid"),
    ("tighten_threshold", "after one re-centroid: largest distance kept"),
    ("sub_threshold", "average-linkage cut of the sub-clusters"),
    ("join_threshold", "largest centroid distance of a fragment to its anchor"),
    ("min_short", "smallest face short edge, pixels"),
    ("min_blur", "smallest sharpness"),
    ("min_det_score", "smallest detector score"),
)
# The export's own gates on each era's crops (as `facesets export-swap` takes them).
EXPORT_FLOATS = (
    ("outlier_threshold", "era export: distance to the era's centroid that rejects a crop"),
    ("min_face_short", "era export: smallest face short edge of a crop, pixels"),
)


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


def _years_flags(
    parser: argparse.ArgumentParser, defaults: AgeProbeParams | AgeSplitParams
) -> None:
    parser.add_argument(
        "--anchor-min-faces",
        type=int,
        default=defaults.anchor_min_faces,
        help="sub-clusters this large are anchors; smaller eras are thin (default %(default)s)",
    )
    parser.add_argument(
        "--era-years",
        type=int,
        default=defaults.era_years,
        help="a fragment joins an anchor whose dominant year is this close (default %(default)s)",
    )


def _store(args: argparse.Namespace) -> Path:
    if args.store is not None:
        return Path(args.store)
    beside = Path(args.export_dir).absolute().parent / layout.RUN_STORE
    if not beside.is_file():
        raise SystemExit(f"no store given and none at {beside}; pass --store STORE")
    return beside


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    _positional(parser)
    defaults = AgeProbeParams()
    parser.add_argument(
        "--sub-threshold",
        type=float,
        default=defaults.sub_threshold,
        help="cut whose sub-clusters get capture-year spreads (default %(default)s)",
    )
    _years_flags(parser, defaults)
    add_service_arguments(parser, "clustering")


def _float_flags(
    parser: argparse.ArgumentParser, flags: tuple[tuple[str, str], ...], defaults: object
) -> None:
    """One `--name` float flag per (field, help) pair, its default read from `defaults`."""
    for name, text in flags:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=float,
            default=getattr(defaults, name),
            help=f"{text} (default %(default)s)",
        )


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    _positional(parser)
    defaults = AgeSplitParams()
    _float_flags(parser, SPLIT_FLOATS, defaults)
    _years_flags(parser, defaults)
    export = ExportSwapParams()
    parser.add_argument(
        "--top-n",
        type=int,
        default=export.top_n,
        help="crops in each era's _topN bundle (default %(default)s)",
    )
    _float_flags(parser, EXPORT_FLOATS, export)
    parser.add_argument(
        "--dry-run", action="store_true", help="print the eras it would make; write nothing"
    )
    add_service_arguments(parser, "export", "clustering", "inference")


def probe_job(args: argparse.Namespace) -> stages.AgeProbeJob:
    params = AgeProbeParams(
        sub_threshold=args.sub_threshold,
        anchor_min_faces=args.anchor_min_faces,
        era_years=args.era_years,
    )
    return stages.AgeProbeJob(_store(args), args.export_dir, args.faceset, params)


def split_job(args: argparse.Namespace, extend: bool) -> stages.AgeSplitJob:
    params = AgeSplitParams(
        **{name: getattr(args, name) for name, _ in SPLIT_FLOATS},
        anchor_min_faces=args.anchor_min_faces,
        era_years=args.era_years,
        dry_run=args.dry_run,
    )
    return stages.AgeSplitJob(_store(args), args.export_dir, args.faceset, extend, params)


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
    export = ExportSwapParams(
        top_n=args.top_n, **{name: getattr(args, name) for name, _ in EXPORT_FLOATS}
    )
    with services(args, job.roots()) as opened:
        summary = stages.age_split(opened, job, export)
    print_summary(summary.as_dict(), args.json)
    if extend:
        plan = stages.era_plan_path(job.export_dir, summary.get("faceset") or job.faceset)
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
