"""`facesets run SRC OUT`: the whole pipeline in one command.

embed → cluster → refine → enrich → export-swap → report, each stage incremental or
idempotent, so an interrupted run is finished by running the same command again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from facesets.common import layout, settings
from facesets.common.folder_lock import run_locked
from facesets.common.gates import explain_empty
from facesets.orchestrator import export_cmd, jobs
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.embed import embed
from facesets.orchestrator.enrich import enrich


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="folder of photos (searched recursively)")
    parser.add_argument(
        "out",
        type=Path,
        help=f"where everything goes: {layout.RUN_STORE}, "
        f"{layout.RUN_RAW_DIR}/, {layout.RUN_REFINE_DIR}/, {layout.RUN_EXPORT_DIR}/ "
        f"(with {layout.REPORT_DIR}/{layout.REPORT_INDEX})",
    )
    parser.add_argument(
        "--min-faces",
        type=int,
        default=settings.REFINE_MIN_FACES,
        help="unique photos a faceset needs (default %(default)s)",
    )
    parser.add_argument(
        "--top-n",
        type=int,
        default=settings.EXPORT_TOP_N,
        help="crops in each _topN bundle (default %(default)s)",
    )
    parser.add_argument(
        "--no-candidates",
        action="store_true",
        help="do not rescue near singletons into _candidates/",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "inference", "clustering", "export")


def _stage(name: str, results: dict[str, Any], work: Any) -> Any:
    print(f"[{len(results) + 1}/5] {name}", file=sys.stderr, flush=True)
    started = time.monotonic()
    value = work()
    results[name] = {"seconds": round(time.monotonic() - started, 1), **value}
    return value


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The whole pipeline into OUT, which no other run may write meanwhile."""
    out = args.out.resolve()
    return run_locked([out], lambda: _run_pipeline(args, out))


def _run_pipeline(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    store = out / layout.RUN_STORE
    raw, refined, exported = (
        out / layout.RUN_RAW_DIR,
        out / layout.RUN_REFINE_DIR,
        out / layout.RUN_EXPORT_DIR,
    )
    results: dict[str, Any] = {}
    with services(args) as opened:
        _stage("embed", results, lambda: embed(opened, args.src, store).as_dict())
        cluster_args = jobs.command_args(jobs.add_cluster_arguments, store, raw)
        _stage("cluster", results, lambda: jobs.cluster(opened, cluster_args))
        refine_args = jobs.command_args(
            jobs.add_refine_arguments, store, refined, min_faces=args.min_faces
        )
        # Before refine: faces of an earlier version's store get the sharpness its gate reads.
        _stage("enrich", results, lambda: enrich(opened, store))
        _stage("refine", results, lambda: jobs.refine(opened, refine_args))
        export_args = jobs.command_args(
            export_cmd.add_arguments,
            store,
            refined / layout.REFINE_MANIFEST,
            exported,
            raw_manifest=raw / layout.CLUSTER_MANIFEST,
            candidates=not args.no_candidates,
            top_n=args.top_n,
        )
        _stage(
            "export-swap and report", results, lambda: export_cmd.export_swap(opened, export_args)
        )
    results["report"] = str(exported / layout.REPORT_DIR / layout.REPORT_INDEX)
    return results


def format_summary(results: dict[str, Any]) -> str:
    embed_s, cluster_s, refine_s = results["embed"], results["cluster"], results["refine"]
    export_s = results["export-swap and report"]
    store = embed_s.get("store", {})
    errors = sum(store.get("errors_by_reason", {}).values())
    exported = {k: v for k, v in export_s.items() if not isinstance(v, dict | list)}
    lines = [
        "",
        f"photos     {store.get('images', 0)} in the store ({embed_s['embedded']} embedded now), "
        f"{store.get('faces', 0)} faces, {errors} errors",
        f"clusters   {cluster_s.get('persons', '?')} people, "
        f"{cluster_s.get('singletons', '?')} singletons",
        f"facesets   {refine_s.get('facesets', '?')} after refine",
        f"exported   {json.dumps(exported)}",
        f"report     {results['report']}",
    ]
    if explanation := explain_empty(refine_s):
        lines.append(explanation)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    results = run_pipeline(args)
    print(json.dumps(results, indent=2, default=str) if args.json else format_summary(results))
    return 0


COMMANDS = {
    "run": (
        "the whole pipeline in one command: embed, cluster, refine, enrich, "
        "export-swap and the review report",
        add_arguments,
        run,
    )
}
