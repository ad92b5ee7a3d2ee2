"""`facesets cluster|refine|extend|dedup|consolidate`: jobs run by the clustering service."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from facesets.common import settings
from facesets.common.gates import explain_empty
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.v1 import clustering_pb2, common_pb2

LINK_MODES = {
    "auto": clustering_pb2.LINK_MODE_AUTO,
    "hardlink": clustering_pb2.LINK_MODE_HARDLINK,
    "symlink": clustering_pb2.LINK_MODE_SYMLINK,
    "copy": clustering_pb2.LINK_MODE_COPY,
}


def follow(events: Iterator[common_pb2.JobEvent], show_progress: bool = True) -> dict[str, Any]:
    """Show a progress bar per stage; return the job's summary (with its manifest path)."""
    bars: dict[str, tqdm] = {}
    try:
        for event in events:
            if event.HasField("progress"):
                progress = event.progress
                bar = bars.get(progress.stage)
                if bar is None:
                    bar = bars[progress.stage] = tqdm(
                        total=progress.total or None,
                        desc=progress.stage,
                        unit="",
                        disable=not show_progress,
                        leave=False,
                        position=len(bars),
                    )
                bar.total = progress.total or bar.total
                if progress.message:
                    bar.set_postfix_str(progress.message, refresh=False)
                bar.update(progress.done - bar.n)  # update() honours tqdm's refresh interval
            else:
                summary = json.loads(event.done.summary_json or "{}")
                if event.done.manifest_path:
                    summary.setdefault("manifest", event.done.manifest_path)
                return summary
    finally:
        for bar in bars.values():
            bar.close()
    raise RuntimeError("the service ended the job without a result")


def command_args(
    add_arguments: Callable[[argparse.ArgumentParser], None], *positionals: object, **overrides: Any
) -> argparse.Namespace:
    """A command's arguments as its own parser would give them: every default from there."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    args = parser.parse_args([str(p) for p in positionals])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def _absolute(path: Path | None) -> str:
    return str(Path(path).resolve()) if path else ""


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return
    for key, value in summary.items():
        if isinstance(value, dict | list) and len(json.dumps(value)) > 100:
            value = f"({len(value)} entries; see the manifest)"
        print(f"{key:<28} {value}")
    if explanation := explain_empty(summary):
        print(explanation)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "clustering")


def _link_mode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--link-mode",
        choices=sorted(LINK_MODES),
        default="auto",
        help="how photos appear in output folders (auto: hardlink where the "
        "filesystem allows, copy otherwise)",
    )


# --- cluster -------------------------------------------------------------------------------
def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store written by `facesets embed`")
    parser.add_argument(
        "out", type=Path, help="output folder: person_NNN/, _singletons/, _noface/, manifest.json"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=settings.CLUSTER_THRESHOLD,
        help="cosine distance cut of average linkage (default %(default)s)",
    )
    _link_mode(parser)
    _common(parser)


def cluster(opened: Services, args: argparse.Namespace) -> dict[str, Any]:
    request = clustering_pb2.ClusterRequest(
        store=_absolute(args.store),
        out=_absolute(args.out),
        threshold=args.threshold,
        link_mode=LINK_MODES[args.link_mode],
    )
    return follow(opened.clustering().job("Cluster", request))


# --- refine --------------------------------------------------------------------------------
def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store written by `facesets embed`")
    parser.add_argument(
        "out", type=Path, help="output folder: faceset_NNN/ and refine_manifest.json"
    )
    s = settings
    for flag, default, text in (
        ("--initial-threshold", s.CLUSTER_THRESHOLD, "cosine distance of the first clustering"),
        ("--merge-threshold", s.REFINE_MERGE_THRESHOLD, "centroid distance that merges clusters"),
        ("--outlier-threshold", s.REFINE_OUTLIER_THRESHOLD, "distance to centroid that rejects"),
        ("--min-short", s.QUALITY_MIN_SHORT, "smallest face short edge, pixels"),
        ("--min-blur", s.QUALITY_MIN_BLUR, "smallest sharpness of the face (README: sharpness)"),
        ("--min-det-score", s.QUALITY_MIN_DET_SCORE, "smallest detector score"),
    ):
        parser.add_argument(flag, type=float, default=default, help=f"{text} (default %(default)s)")
    parser.add_argument(
        "--min-faces",
        type=int,
        default=s.REFINE_MIN_FACES,
        help="unique photos a faceset needs (default %(default)s)",
    )
    _link_mode(parser)
    _common(parser)


def refine(opened: Services, args: argparse.Namespace) -> dict[str, Any]:
    request = clustering_pb2.RefineRequest(
        store=_absolute(args.store),
        out=_absolute(args.out),
        initial_threshold=args.initial_threshold,
        merge_threshold=args.merge_threshold,
        outlier_threshold=args.outlier_threshold,
        min_faces=args.min_faces,
        min_short=args.min_short,
        min_blur=args.min_blur,
        min_det_score=args.min_det_score,
        link_mode=LINK_MODES[args.link_mode],
    )
    return follow(opened.clustering().job("Refine", request))


# --- extend --------------------------------------------------------------------------------
def add_extend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store, grown since the last cluster run")
    parser.add_argument("raw_out", type=Path, help="output folder of `facesets cluster`")
    parser.add_argument("--refine-out", type=Path, help="output folder of `facesets refine`")
    parser.add_argument(
        "--threshold",
        type=float,
        default=settings.EXTEND_THRESHOLD,
        help="largest distance to a known centroid (default %(default)s)",
    )
    _link_mode(parser)
    _common(parser)


def extend(opened: Services, args: argparse.Namespace) -> dict[str, Any]:
    request = clustering_pb2.ExtendRequest(
        store=_absolute(args.store),
        raw_out=_absolute(args.raw_out),
        refine_out=_absolute(args.refine_out),
        threshold=args.threshold,
        link_mode=LINK_MODES[args.link_mode],
    )
    return follow(opened.clustering().job("Extend", request))


# --- dedup ---------------------------------------------------------------------------------
def add_dedup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store; writes STORE.duplicates.json")
    parser.add_argument(
        "--near-threshold",
        type=float,
        default=settings.NEAR_DUPLICATE_THRESHOLD,
        help="descriptor distance of visual near-duplicates (default %(default)s)",
    )
    _common(parser)


def dedup(opened: Services, args: argparse.Namespace) -> dict[str, Any]:
    request = clustering_pb2.DedupRequest(
        store=_absolute(args.store), near_threshold=args.near_threshold
    )
    return follow(opened.clustering().job("Dedup", request))


# --- consolidate ---------------------------------------------------------------------------
def add_consolidate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("facesets_dir", type=Path, help="output folder of `facesets refine`")
    parser.add_argument("store", type=Path, help="face store the facesets came from")
    parser.add_argument(
        "--candidate-similarity",
        type=float,
        default=settings.CONSOLIDATE_CANDIDATE_SIM,
        help="centroid similarity reported as a candidate (default %(default)s)",
    )
    parser.add_argument(
        "--confident-similarity",
        type=float,
        default=settings.CONSOLIDATE_CONFIDENT_SIM,
        help="centroid similarity merged (default %(default)s)",
    )
    parser.add_argument("--undo", action="store_true", help="restore the facesets merged before")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report candidates and merges without changing anything",
    )
    _common(parser)


def consolidate(opened: Services, args: argparse.Namespace) -> dict[str, Any]:
    request = clustering_pb2.ConsolidateRequest(
        facesets_dir=_absolute(args.facesets_dir),
        store=_absolute(args.store),
        candidate_similarity=args.candidate_similarity,
        confident_similarity=args.confident_similarity,
        undo=args.undo,
        dry_run=args.dry_run,
    )
    return follow(opened.clustering().job("Consolidate", request))


def _runner(job: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        with services(args) as opened:
            summary = job(opened, args)
        print_summary(summary, args.json)
        return 0

    return run


COMMANDS = {
    "cluster": ("cluster all faces into person folders", add_cluster_arguments, _runner(cluster)),
    "refine": (
        "build clean facesets: cluster, merge, quality gates, outliers, size",
        add_refine_arguments,
        _runner(refine),
    ),
    "extend": (
        "fold new faces into existing person / faceset folders without renumbering",
        add_extend_arguments,
        _runner(extend),
    ),
    "dedup": (
        "find byte-identical and visually near-duplicate photos",
        add_dedup_arguments,
        _runner(dedup),
    ),
    "consolidate": (
        "merge facesets that hold the same person (reversible with --undo)",
        add_consolidate_arguments,
        _runner(consolidate),
    ),
}
