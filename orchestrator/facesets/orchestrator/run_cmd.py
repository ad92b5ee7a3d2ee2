"""`facesets run SRC OUT`: the whole pipeline in one command.

embed → cluster → refine → enrich → export-swap → report, each stage incremental or
idempotent, so an interrupted run is finished by running the same command again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from facesets.contract import layout
from facesets.contract.clustering import ClusterRequest, RefineParams, RefineRequest
from facesets.contract.export import ExportSwapParams, ExportSwapRequest
from facesets.contract.gates import explain_empty
from facesets.orchestrator import stages
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.embed import add_listing_arguments, embed
from facesets.orchestrator.enrich import enrich
from facesets.shared.folder_lock import run_locked

STAGES = ("embed", "cluster", "enrich", "refine", "export")


@dataclass(frozen=True)
class RunRequest:
    src: Path
    out: Path
    min_faces: int = RefineParams().min_faces
    top_n: int = ExportSwapParams().top_n
    candidates: bool = True
    verbose: bool = False  # list every skipped file

    def roots(self) -> list[Path]:
        return [self.src, self.out]

    def __post_init__(self) -> None:
        # Checked before anything runs: a bad value stops the run at its start.
        RefineParams(min_faces=self.min_faces)
        ExportSwapParams(top_n=self.top_n)


@dataclass
class RunSummary:
    """Every stage's summary, in the order they ran, and where the review report is."""

    stages: dict[str, stages.StageSummary] = field(default_factory=dict)
    report: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            **{name: summary.as_dict() for name, summary in self.stages.items()},
            "report": self.report,
        }

    def format(self) -> str:
        """One human-readable block per stage."""
        blocks = [_block(summary) for summary in self.stages.values()]
        blocks.append(f"report\n  {self.report}")
        if "refine" in self.stages and (why := explain_empty(self.stages["refine"].values)):
            blocks.append(why)
        return "\n\n".join(["", *blocks])


def _headline(summary: stages.StageSummary) -> str:
    s = summary
    if s.stage == "embed":
        store = s.get("store", {})
        errors = sum(store.get("errors_by_reason", {}).values())
        return (
            f"{store.get('images', 0)} photos in the store ({s['embedded']} embedded now), "
            f"{store.get('faces', 0)} faces, {errors} errors"
        )
    if s.stage == "cluster":
        return f"{s.get('persons', '?')} people, {s.get('singletons', '?')} singletons"
    if s.stage == "refine":
        return f"{s.get('facesets', '?')} facesets after refine"
    if s.stage == "enrich":
        return f"{s.get('faces_updated', 0)} of {s.get('faces_lacking', 0)} faces enriched"
    if s.stage == "export":
        return (
            f"{s.get('facesets', 0)} facesets, {s.get('kept', 0)} of {s.get('faces', 0)} "
            f"faces kept, {s.get('candidates', 0)} candidates"
        )
    return ""


def _block(summary: stages.StageSummary) -> str:
    took = f" ({summary.seconds:.1f} s)" if summary.seconds is not None else ""
    lines = [f"{summary.stage}{took}: {_headline(summary)}"]
    lines += [f"  {line}" for line in summary.lines()]
    return "\n".join(lines)


def _stage(
    name: str, results: RunSummary, work: Callable[[], Mapping[str, object] | stages.StageSummary]
) -> None:
    print(f"[{len(results.stages) + 1}/{len(STAGES)}] {name}", file=sys.stderr, flush=True)
    started = time.monotonic()
    value = work()
    values = value.values if isinstance(value, stages.StageSummary) else dict(value)
    results.stages[name] = stages.StageSummary(name, values, round(time.monotonic() - started, 1))


def run_pipeline(
    request: RunRequest, connect: Callable[[], AbstractContextManager[Services]]
) -> RunSummary:
    """The whole pipeline into OUT, which no other run may write meanwhile; the services are
    opened (`connect`) once OUT is held."""
    out = request.out.resolve()

    def work() -> RunSummary:
        with connect() as opened:
            return _run_pipeline(opened, request, out)

    return run_locked([out], work)


def _run_pipeline(opened: Services, request: RunRequest, out: Path) -> RunSummary:
    store = out / layout.RUN_STORE
    raw, refined, exported = (
        out / layout.RUN_RAW_DIR,
        out / layout.RUN_REFINE_DIR,
        out / layout.RUN_EXPORT_DIR,
    )
    results = RunSummary()
    _stage(
        "embed",
        results,
        lambda: embed(opened, request.src, store, verbose=request.verbose).as_dict(),
    )
    _stage("cluster", results, lambda: stages.clustering_job(opened, ClusterRequest(store, raw)))
    refine = RefineRequest(store, refined, RefineParams(min_faces=request.min_faces))
    # Before refine: faces of an earlier version's store get the sharpness its gate reads.
    _stage("enrich", results, lambda: enrich(opened, store))
    _stage("refine", results, lambda: stages.clustering_job(opened, refine))
    export = ExportSwapRequest(
        store,
        refined / layout.REFINE_MANIFEST,
        exported,
        raw_manifest=raw / layout.CLUSTER_MANIFEST,
        candidates=request.candidates,
        params=ExportSwapParams(top_n=request.top_n),
    )
    _stage("export", results, lambda: stages.export_swap(opened, export))
    results.report = str(exported / layout.REPORT_DIR / layout.REPORT_INDEX)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="folder of photos (searched recursively)")
    parser.add_argument(
        "out",
        type=Path,
        help=f"where everything goes: {layout.RUN_STORE}, "
        f"{layout.RUN_RAW_DIR}/, {layout.RUN_REFINE_DIR}/, {layout.RUN_EXPORT_DIR}/ "
        f"(with {layout.REPORT_DIR}/{layout.REPORT_INDEX})",
    )
    defaults = RunRequest(Path(), Path())
    parser.add_argument(
        "--min-faces",
        type=int,
        default=defaults.min_faces,
        help="unique photos a faceset needs (default %(default)s)",
    )
    parser.add_argument(
        "--top-n",
        type=int,
        default=defaults.top_n,
        help="crops in each _topN bundle (default %(default)s)",
    )
    parser.add_argument(
        "--no-candidates",
        action="store_true",
        help="do not rescue near singletons into _candidates/",
    )
    parser.add_argument(
        "--json", action="store_true", help="print every stage's summary as one JSON object"
    )
    add_listing_arguments(parser)
    add_service_arguments(parser, "inference", "clustering", "export")


def run(args: argparse.Namespace) -> int:
    request = RunRequest(
        args.src,
        args.out,
        args.min_faces,
        args.top_n,
        candidates=not args.no_candidates,
        verbose=args.verbose,
    )
    results = run_pipeline(request, lambda: services(args, request.roots()))
    print(json.dumps(results.as_dict(), indent=2, default=str) if args.json else results.format())
    return 0


COMMANDS = {
    "run": (
        "the whole pipeline in one command: embed, cluster, refine, enrich, "
        "export-swap and the review report",
        add_arguments,
        run,
    )
}
