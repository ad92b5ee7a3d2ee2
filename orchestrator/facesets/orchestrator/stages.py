"""The orchestrator's stage API: one function per service job, a typed request in, a summary out.

`facesets run`, `facesets immich import` and the single-job commands all call these; none of
them sees the command line. A request carries paths and the job's parameters object (the same
class the service validates with), and becomes the job's proto here: its paths one by one, its
parameters by field name (`request_fields`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesets.clustering.params import (
    AgeProbeParams,
    AgeSplitParams,
    ClusterParams,
    ConsolidateParams,
    DedupParams,
    DiscoverParams,
    ExtendParams,
    ImportFoldersParams,
    RefineParams,
    RouteParams,
)
from facesets.common.params import request_fields
from facesets.export.maintenance.dedup import DedupOptimizeParams
from facesets.export.maintenance.merge import MergeParams
from facesets.export.maintenance.occlusion import OcclusionParams
from facesets.export.params import ExportSwapParams
from facesets.export.video.params import VideoCutParams, VideoPlanParams
from facesets.orchestrator.connect import Services
from facesets.orchestrator.console import progress_bar, summary_lines
from facesets.v1 import clustering_pb2, common_pb2, export_pb2


@dataclass(frozen=True)
class StageSummary:
    """What one stage reports: the job's summary as its service wrote it."""

    stage: str
    values: dict[str, Any]
    seconds: float | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def as_dict(self) -> dict[str, Any]:
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
) -> dict[str, Any]:
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
                summary: dict[str, Any] = json.loads(event.done.summary_json or "{}")
                if event.done.manifest_path:
                    summary.setdefault("manifest", event.done.manifest_path)
                return summary
    finally:
        for bar in bars.values():
            bar.close()
    raise RuntimeError("the service ended the job without a result")


def _absolute(path: Path | None) -> str:
    return str(Path(path).resolve()) if path else ""


# --- requests ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterJob:
    store: Path
    out: Path
    params: ClusterParams = field(default_factory=ClusterParams)

    def roots(self) -> list[Path]:
        return [self.store, self.out]

    def to_proto(self) -> clustering_pb2.ClusterRequest:
        return clustering_pb2.ClusterRequest(
            store=_absolute(self.store),
            out=_absolute(self.out),
            **request_fields(self.params, clustering_pb2.ClusterRequest),
        )


@dataclass(frozen=True)
class RefineJob:
    store: Path
    out: Path
    params: RefineParams = field(default_factory=RefineParams)

    def roots(self) -> list[Path]:
        return [self.store, self.out]

    def to_proto(self) -> clustering_pb2.RefineRequest:
        return clustering_pb2.RefineRequest(
            store=_absolute(self.store),
            out=_absolute(self.out),
            **request_fields(self.params, clustering_pb2.RefineRequest),
        )


@dataclass(frozen=True)
class ExtendJob:
    store: Path
    raw_out: Path
    refine_out: Path | None = None
    params: ExtendParams = field(default_factory=ExtendParams)

    def roots(self) -> list[Path]:
        return [self.store, self.raw_out, *([self.refine_out] if self.refine_out else [])]

    def to_proto(self) -> clustering_pb2.ExtendRequest:
        return clustering_pb2.ExtendRequest(
            store=_absolute(self.store),
            raw_out=_absolute(self.raw_out),
            refine_out=_absolute(self.refine_out),
            **request_fields(self.params, clustering_pb2.ExtendRequest),
        )


@dataclass(frozen=True)
class DedupJob:
    store: Path
    params: DedupParams = field(default_factory=DedupParams)

    def roots(self) -> list[Path]:
        return [self.store]

    def to_proto(self) -> clustering_pb2.DedupRequest:
        return clustering_pb2.DedupRequest(
            store=_absolute(self.store), **request_fields(self.params, clustering_pb2.DedupRequest)
        )


@dataclass(frozen=True)
class ConsolidateJob:
    facesets_dir: Path
    store: Path
    params: ConsolidateParams = field(default_factory=ConsolidateParams)

    def roots(self) -> list[Path]:
        return [self.store, self.facesets_dir]

    def to_proto(self) -> clustering_pb2.ConsolidateRequest:
        return clustering_pb2.ConsolidateRequest(
            facesets_dir=_absolute(self.facesets_dir),
            store=_absolute(self.store),
            **request_fields(self.params, clustering_pb2.ConsolidateRequest),
        )


@dataclass(frozen=True)
class RouteJob:
    store: Path
    facesets_dir: Path
    sha256: Sequence[str] = ()  # empty: every face no faceset holds
    params: RouteParams = field(default_factory=RouteParams)

    def roots(self) -> list[Path]:
        return [self.store, self.facesets_dir]

    def to_proto(self) -> clustering_pb2.RouteRequest:
        return clustering_pb2.RouteRequest(
            store=_absolute(self.store),
            facesets_dir=_absolute(self.facesets_dir),
            sha256=sorted(self.sha256),
            **request_fields(self.params, clustering_pb2.RouteRequest),
        )


@dataclass(frozen=True)
class ImportFoldersJob:
    """Hand-sorted folders (label -> folder) as identities, mixed folders routed to them."""

    store: Path
    export: Path
    trusted: Sequence[tuple[str, Path]]
    mixed: Sequence[Path] = ()
    params: ImportFoldersParams = field(default_factory=ImportFoldersParams)

    def roots(self) -> list[Path]:
        return [self.store, self.export, *(f for _, f in self.trusted), *self.mixed]

    def to_proto(self) -> clustering_pb2.ImportFoldersRequest:
        return clustering_pb2.ImportFoldersRequest(
            store=_absolute(self.store),
            export=_absolute(self.export),
            trusted=[
                clustering_pb2.TrustedFolder(label=label, folder=_absolute(folder))
                for label, folder in self.trusted
            ],
            mixed=[_absolute(m) for m in self.mixed],
            **request_fields(self.params, clustering_pb2.ImportFoldersRequest),
        )


@dataclass(frozen=True)
class DiscoverJob:
    """New identities among the faces of photos under `root`, apart from the exported ones."""

    store: Path
    root: Path
    export: Path
    params: DiscoverParams = field(default_factory=DiscoverParams)

    def roots(self) -> list[Path]:
        return [self.store, self.root, self.export]

    def to_proto(self) -> clustering_pb2.DiscoverRequest:
        return clustering_pb2.DiscoverRequest(
            store=_absolute(self.store),
            root=_absolute(self.root),
            export=_absolute(self.export),
            **request_fields(self.params, clustering_pb2.DiscoverRequest),
        )


@dataclass(frozen=True)
class ExportJob:
    store: Path
    refine_manifest: Path
    out: Path
    raw_manifest: Path | None = None  # needed by candidates
    candidates: bool = False
    params: ExportSwapParams = field(default_factory=ExportSwapParams)

    def __post_init__(self) -> None:
        if self.candidates and not self.raw_manifest:
            raise ValueError(
                "candidates need the raw manifest of `facesets cluster` (--raw-manifest)"
            )

    def roots(self) -> list[Path]:
        extra = [self.raw_manifest] if self.raw_manifest else []
        return [self.store, self.refine_manifest, self.out, *extra]

    def to_proto(self) -> export_pb2.ExportSwapRequest:
        return export_pb2.ExportSwapRequest(
            store=_absolute(self.store),
            refine_manifest=_absolute(self.refine_manifest),
            out=_absolute(self.out),
            raw_manifest=_absolute(self.raw_manifest),
            candidates=self.candidates,
            **request_fields(self.params, export_pb2.ExportSwapRequest),
        )


@dataclass(frozen=True)
class VideoPlanJob:
    src: Path
    out: Path
    match_dir: Path | None = None  # keep only tracks of the person of this faceset's images
    params: VideoPlanParams = field(default_factory=VideoPlanParams)

    def roots(self) -> list[Path]:
        return [self.src, self.out, *([self.match_dir] if self.match_dir else [])]

    def to_proto(self) -> export_pb2.PlanVideosRequest:
        return export_pb2.PlanVideosRequest(
            src=_absolute(self.src),
            out=_absolute(self.out),
            match_dir=_absolute(self.match_dir),
            **request_fields(self.params, export_pb2.PlanVideosRequest),
        )


@dataclass(frozen=True)
class VideoCutJob:
    out: Path
    params: VideoCutParams = field(default_factory=VideoCutParams)
    sources: Sequence[Path] = ()  # the planned videos, read by ffmpeg

    def roots(self) -> list[Path]:
        return [self.out, *self.sources]

    def to_proto(self) -> export_pb2.CutSegmentsRequest:
        return export_pb2.CutSegmentsRequest(
            out=_absolute(self.out), **request_fields(self.params, export_pb2.CutSegmentsRequest)
        )


ERAS_DIR = "_eras"  # EXPORT/_eras/<faceset>.json: the era plan (jobs/age_split.py)
THIN_DIR = "_thin"


def era_plan_path(export_dir: Path, faceset: str) -> Path:
    """Where `age split` keeps the era plan of a faceset (named or numbered)."""
    name = faceset.strip()
    name = f"faceset_{int(name):03d}" if name.isdigit() else name
    return Path(export_dir) / ERAS_DIR / f"{name}.json"


@dataclass(frozen=True)
class AgeProbeJob:
    store: Path
    export_dir: Path
    faceset: str
    params: AgeProbeParams = field(default_factory=AgeProbeParams)

    def to_proto(self) -> clustering_pb2.AgeProbeRequest:
        return clustering_pb2.AgeProbeRequest(
            store=_absolute(self.store),
            export_dir=_absolute(self.export_dir),
            faceset=self.faceset,
            **request_fields(self.params, clustering_pb2.AgeProbeRequest),
        )

    def roots(self) -> list[Path]:
        return [Path(self.store), Path(self.export_dir)]


@dataclass(frozen=True)
class AgeSplitJob:
    """`age split` (extend False) or `age extend` of one faceset of an export."""

    store: Path
    export_dir: Path
    faceset: str
    extend: bool = False
    params: AgeSplitParams = field(default_factory=AgeSplitParams)

    def to_proto(self) -> clustering_pb2.AgeSplitRequest:
        return clustering_pb2.AgeSplitRequest(
            store=_absolute(self.store),
            export_dir=_absolute(self.export_dir),
            faceset=self.faceset,
            **request_fields(self.params, clustering_pb2.AgeSplitRequest),
        )

    def roots(self) -> list[Path]:
        """The store, and the export (read, and its _eras/, _thin/ and era folders written)."""
        return [Path(self.store), Path(self.export_dir)]


@dataclass(frozen=True)
class OcclusionJob:
    out: Path
    params: OcclusionParams = field(default_factory=OcclusionParams)
    undo: bool = False  # restore the last occlusion run instead

    def roots(self) -> list[Path]:
        return [self.out]

    def to_proto(self) -> export_pb2.OcclusionRequest:
        return export_pb2.OcclusionRequest(
            out=_absolute(self.out),
            undo=self.undo,
            **request_fields(self.params, export_pb2.OcclusionRequest),
        )


@dataclass(frozen=True)
class DedupOptimizeJob:
    out: Path
    params: DedupOptimizeParams = field(default_factory=DedupOptimizeParams)

    def roots(self) -> list[Path]:
        return [self.out]

    def to_proto(self) -> export_pb2.DedupOptimizeRequest:
        return export_pb2.DedupOptimizeRequest(
            out=_absolute(self.out), **request_fields(self.params, export_pb2.DedupOptimizeRequest)
        )


@dataclass(frozen=True)
class MergeJob:
    out: Path
    params: MergeParams

    def roots(self) -> list[Path]:
        return [self.out]

    def to_proto(self) -> export_pb2.MergeRequest:
        p = self.params
        return export_pb2.MergeRequest(
            out=_absolute(self.out), faceset=p.faceset, into=p.into, dry_run=p.dry_run
        )


@dataclass(frozen=True)
class RestoreJob:
    out: Path
    run_id: str = ""
    faceset: str = ""

    def __post_init__(self) -> None:
        if bool(self.run_id) == bool(self.faceset):
            raise ValueError("restore needs exactly one of --run ID or --faceset NAME")

    def roots(self) -> list[Path]:
        return [self.out]

    def to_proto(self) -> export_pb2.RestoreRequest:
        return export_pb2.RestoreRequest(
            out=_absolute(self.out), run_id=self.run_id, faceset=self.faceset
        )


ClusteringJob = (
    ClusterJob
    | RefineJob
    | ExtendJob
    | DedupJob
    | ConsolidateJob
    | RouteJob
    | ImportFoldersJob
    | DiscoverJob
    | AgeProbeJob
)
RPC_OF: dict[type, str] = {
    AgeProbeJob: "AgeProbe",
    ClusterJob: "Cluster",
    RefineJob: "Refine",
    ExtendJob: "Extend",
    DedupJob: "Dedup",
    ConsolidateJob: "Consolidate",
    RouteJob: "Route",
    ImportFoldersJob: "ImportFolders",
    DiscoverJob: "Discover",
}


# --- stages --------------------------------------------------------------------------------
def clustering_job(
    opened: Services, job: ClusteringJob, show_progress: bool = True
) -> StageSummary:
    """Run one clustering-service job to its end; its summary comes back."""
    rpc = RPC_OF[type(job)]
    events = opened.clustering().job(rpc, job.to_proto())
    return StageSummary(rpc.lower(), follow(events, show_progress))


def export_swap(opened: Services, job: ExportJob, show_progress: bool = True) -> StageSummary:
    """Export the facesets of a refine manifest, then write the review report."""
    summary = follow(opened.export().export_swap(job.to_proto()), show_progress)
    return StageSummary("export", {**summary, **report(opened, job.out, show_progress).as_dict()})


def report(opened: Services, export_dir: Path, show_progress: bool = True) -> StageSummary:
    """(Re)write the review report of an export folder from its manifests."""
    return StageSummary(
        "report", follow(opened.export(peers=False).report(_absolute(export_dir)), show_progress)
    )


VIDEO_UNITS = {"plan: sampled frames": "frame", "plan: videos": "video", "cut: segments": "clip"}


def video_plan(opened: Services, job: VideoPlanJob, show_progress: bool = True) -> StageSummary:
    """Shots, sampled frames, tracks and kept segments of every video into OUT/plan.json."""
    request = job.to_proto()
    summary = follow(opened.export().plan_videos(request), show_progress, VIDEO_UNITS)
    return StageSummary("video plan", summary)


def video_cut(opened: Services, job: VideoCutJob, show_progress: bool = True) -> StageSummary:
    """Cut every planned segment with the media service's ffmpeg."""
    events = opened.export(peers=False).cut_segments(job.to_proto())
    summary = follow(events, show_progress, VIDEO_UNITS)
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
    job: AgeSplitJob,
    export: ExportSwapParams | None = None,
    show_progress: bool = True,
) -> StageSummary:
    """Plan the eras of a faceset (clustering service), then export them like facesets (export
    service) and rewrite the report; a dry run only plans and writes nothing."""
    rpc = "AgeExtend" if job.extend else "AgeSplit"
    plan = follow(opened.clustering().job(rpc, job.to_proto()), show_progress)
    stage = "age extend" if job.extend else "age split"
    if job.params.dry_run:
        return StageSummary(stage, plan)
    exported = export_swap(
        opened,
        ExportJob(
            job.store,
            era_plan_path(job.export_dir, job.faceset),
            job.export_dir,
            params=export or ExportSwapParams(),
        ),
        show_progress,
    )
    keep = ("facesets", "kept", "top", "dropped", "skipped_sources", "report")
    return StageSummary(
        stage, {**plan, "export": {k: exported.get(k) for k in keep if k in exported.values}}
    )


def occlusion(opened: Services, job: OcclusionJob, show_progress: bool = True) -> StageSummary:
    """Score an export's PNGs with ClipScore and move the occluded aside (or undo the last run)."""
    events = opened.export().occlusion(job.to_proto())
    return StageSummary("occlusion", follow(events, show_progress))


def dedup_optimize(
    opened: Services, job: DedupOptimizeJob, show_progress: bool = True
) -> StageSummary:
    """Byte copies, multi-face PNGs and near-duplicates of an export moved aside."""
    events = opened.export().dedup_optimize(job.to_proto())
    return StageSummary("dedup-optimize", follow(events, show_progress))


def restore(opened: Services, job: RestoreJob, show_progress: bool = True) -> StageSummary:
    """Put back what a maintenance run (or every run, for one faceset) moved."""
    events = opened.export(peers=False).restore(job.to_proto())
    return StageSummary("restore", follow(events, show_progress))


def merge(opened: Services, job: MergeJob, show_progress: bool = True) -> StageSummary:
    """One faceset of an export joins another; the source goes to _merged/."""
    events = opened.export(peers=False).merge(job.to_proto())
    return StageSummary("merge", follow(events, show_progress))
