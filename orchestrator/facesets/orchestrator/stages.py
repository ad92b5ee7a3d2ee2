"""The orchestrator's stage API: one function per service job, a typed request in, a summary out.

`facesets run`, `facesets immich import` and the single-job commands all call these; none of
them sees the command line. A request carries paths and the job's parameters object (the same
class the service validates with); the requests and their parameters are the contract's
(facesets.contract), and the client library runs them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesets.contract import layout
from facesets.contract.clustering import AgeSplitRequest, ClusteringJobRequest
from facesets.contract.export import (
    DedupOptimizeRequest,
    ExportSwapParams,
    ExportSwapRequest,
    MergeRequest,
    OcclusionRequest,
    ReportRequest,
    RestoreRequest,
)
from facesets.contract.video import VideoCutRequest, VideoPlanRequest
from facesets.orchestrator.connect import Services
from facesets.orchestrator.console import progress_bar, summary_lines
from facesets.v1 import common_pb2


@dataclass(frozen=True)
class StageSummary:
    """What one stage reports: the job's summary as its service wrote it."""

    stage: str
    values: dict[str, object]
    seconds: float | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def as_dict(self) -> dict[str, object]:
        """The machine-readable form (JSON-ready)."""
        timing = {} if self.seconds is None else {"seconds": self.seconds}
        return {**timing, **self.values}

    def lines(self) -> list[str]:
        """Human-readable `key  value` lines, with tables of the records a value lists."""
        return summary_lines(self.values)


def follow(
    events: Iterator[common_pb2.JobEvent],
    show_progress: bool = True,
    units: dict[str, str] | None = None,
) -> dict[str, object]:
    """Show a progress bar per stage (rate and ETA in `units[stage]` where given); return the
    job's summary (with its manifest path)."""
    bars: dict[str, Any] = {}  # a tqdm bar, or plain lines where stderr is no terminal
    try:
        for event in events:
            if event.HasField("progress"):
                progress = event.progress
                bar = bars.get(progress.stage)
                if bar is None:
                    bar = bars[progress.stage] = progress_bar(
                        total=progress.total or None,
                        desc=progress.stage,
                        unit=(units or {}).get(progress.stage, ""),
                        disable=not show_progress,
                        leave=False,
                        position=len(bars),
                    )
                bar.total = progress.total or bar.total
                if progress.message:
                    bar.set_postfix_str(progress.message, refresh=False)
                bar.update(progress.done - bar.n)  # update() honours tqdm's refresh interval
            else:
                summary: dict[str, object] = json.loads(event.done.summary_json or "{}")
                if event.done.manifest_path:
                    summary.setdefault("manifest", event.done.manifest_path)
                return summary
    finally:
        for bar in bars.values():
            bar.close()
    raise RuntimeError("the service ended the job without a result")


# --- stages --------------------------------------------------------------------------------
def clustering_job(
    opened: Services, job: ClusteringJobRequest, show_progress: bool = True
) -> StageSummary:
    """Run one clustering-service job to its end; its summary comes back."""
    return StageSummary(job.stage, follow(opened.clustering().run(job), show_progress))


def export_swap(
    opened: Services, job: ExportSwapRequest, show_progress: bool = True
) -> StageSummary:
    """Export the facesets of a refine manifest, then write the review report."""
    summary = follow(opened.export().run(job), show_progress)
    return StageSummary("export", {**summary, **report(opened, job.out, show_progress).as_dict()})


def report(opened: Services, export_dir: Path, show_progress: bool = True) -> StageSummary:
    """(Re)write the review report of an export folder from its manifests."""
    return StageSummary(
        "report", follow(opened.export(peers=False).run(ReportRequest(export_dir)), show_progress)
    )


VIDEO_UNITS = {"plan: sampled frames": "frame", "plan: videos": "video", "cut: segments": "clip"}


def video_plan(opened: Services, job: VideoPlanRequest, show_progress: bool = True) -> StageSummary:
    """Shots, sampled frames, tracks and kept segments of every video into OUT/plan.json."""
    summary = follow(opened.export().run(job), show_progress, VIDEO_UNITS)
    return StageSummary("video plan", summary)


def video_cut(opened: Services, job: VideoCutRequest, show_progress: bool = True) -> StageSummary:
    """Cut every planned segment with the media service's ffmpeg."""
    summary = follow(opened.export(peers=False).run(job), show_progress, VIDEO_UNITS)
    return StageSummary("video cut", summary)


def media_info(opened: Services) -> dict[str, str]:
    info = opened.export(peers=False).info()
    return {
        "ffmpeg": info.ffmpeg_version,
        "ffmpeg_path": info.ffmpeg_path,
        "ffmpeg_source": info.ffmpeg_source,
        "ffprobe": info.ffprobe_path,
        "scenedetect": info.scenedetect_version,
    }


def age_split(
    opened: Services,
    job: AgeSplitRequest,
    export: ExportSwapParams | None = None,
    show_progress: bool = True,
) -> StageSummary:
    """Plan the eras of a faceset (clustering service), then export them like facesets (export
    service) and rewrite the report; a dry run only plans and writes nothing."""
    plan = follow(opened.clustering().run(job), show_progress)
    stage = job.stage
    if job.params.dry_run:
        return StageSummary(stage, plan)
    exported = export_swap(
        opened,
        ExportSwapRequest(
            job.store,
            layout.era_plan_path(job.export_dir, job.faceset),
            job.export_dir,
            params=export or ExportSwapParams(),
        ),
        show_progress,
    )
    keep = ("facesets", "kept", "top", "dropped", "skipped_sources", "report")
    return StageSummary(
        stage, {**plan, "export": {k: exported.get(k) for k in keep if k in exported.values}}
    )


def occlusion(opened: Services, job: OcclusionRequest, show_progress: bool = True) -> StageSummary:
    """Score an export's PNGs with ClipScore and move the occluded aside (or undo the last run)."""
    return StageSummary(job.stage, follow(opened.export().run(job), show_progress))


def dedup_optimize(
    opened: Services, job: DedupOptimizeRequest, show_progress: bool = True
) -> StageSummary:
    """Byte copies, multi-face PNGs and near-duplicates of an export moved aside."""
    return StageSummary(job.stage, follow(opened.export().run(job), show_progress))


def restore(opened: Services, job: RestoreRequest, show_progress: bool = True) -> StageSummary:
    """Put back what a maintenance run (or every run, for one faceset) moved."""
    return StageSummary(job.stage, follow(opened.export(peers=False).run(job), show_progress))


def merge(opened: Services, job: MergeRequest, show_progress: bool = True) -> StageSummary:
    """One faceset of an export joins another; the source goes to _merged/."""
    return StageSummary(job.stage, follow(opened.export(peers=False).run(job), show_progress))
