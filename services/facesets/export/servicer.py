"""The Export gRPC service: roop-ready facesets and the review report.

Faces come from the clustering service (which owns the store); each crop's one-face check
goes to the inference service's CountFaces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import structlog

from facesets.client import ClusteringClient, Endpoint, InferenceClient
from facesets.common.beneath import Beneath
from facesets.common.jobs import abort_on_os_error, allowed_path, job_events, required_path
from facesets.common.progress import ProgressFn
from facesets.common.roots import Roots
from facesets.contract.export import ExportSwapParams
from facesets.contract.fields import InvalidParameter
from facesets.contract.layout import read_json
from facesets.contract.video import VideoCutParams, VideoPlanParams
from facesets.export import report, swap
from facesets.export.crops import load_image_oriented
from facesets.export.disagreements import face_ids as disagreement_face_ids
from facesets.export.disagreements import read_refine_disagreements
from facesets.export.errors import ExportError
from facesets.export.maintenance import dedup, merge, occlusion, restore
from facesets.export.maintenance.inference_calls import ClipScoreScorer, InferenceFaces
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.export.records import (
    FaceRow,
    read_refine_gates,
    read_refine_lookalikes,
    read_refine_manifest,
)
from facesets.export.video import cut as video_cut
from facesets.export.video import plan as video_plan
from facesets.export.video.probe import tools as media_tools
from facesets.shared.folder_lock import run_locked
from facesets.v1 import clustering_pb2, common_pb2, export_pb2, export_pb2_grpc

log = structlog.get_logger(__name__)
SERVICE_NAME = export_pb2.DESCRIPTOR.services_by_name["Export"].full_name

Request = TypeVar("Request")
Params = TypeVar("Params")
# A job that calls the inference service: its parameters, a client, progress -> its summary.
InferenceJob = Callable[[Params, InferenceClient, ProgressFn], dict[str, Any]]
# What such a job raises when the request or the export cannot be used (FAILED_PRECONDITION).
JOB_FAILURES: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, ExportError)


def locked_job(
    context: grpc.ServicerContext,
    out: Path,
    job: Callable[[ProgressFn], Any],
    *,
    create: bool = False,
    failures: tuple[type[Exception], ...] = JOB_FAILURES,
) -> Iterator[common_pb2.JobEvent]:
    """The events of `job(progress)` run while it holds `out` locked (`create`: the folder may
    be made). An error in `failures` ends the call with FAILED_PRECONDITION; a file system
    error (a full disk, a folder it may not write) with the status that says which."""
    try:
        yield from job_events(
            lambda progress: run_locked([out], lambda: job(progress), create=create)
        )
    except failures as error:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
    except OSError as error:
        abort_on_os_error(context, error)


def face_row(record: clustering_pb2.FaceRecord) -> FaceRow:
    face = record.face
    has_pose = face.HasField("pose")
    return FaceRow(
        face_id=record.face_id,
        sha256=record.sha256,
        path=record.path,
        bbox=tuple(face.bbox),  # type: ignore[arg-type]  # four values; a repeated field has no length
        kps=np.asarray(face.kps, np.float32).reshape(5, 2),
        det_score=face.det_score,
        embedding=np.frombuffer(face.embedding, "<f4"),
        face_short=face.face_short,
        blur=face.blur,
        image_width=record.image_width,
        image_height=record.image_height,
        aliases=list(record.aliases),
        yaw=face.pose.yaw if has_pose else None,
        pitch=face.pose.pitch if has_pose else None,
        roll=face.pose.roll if has_pose else None,
        landmark_2d_106=np.asarray(face.landmark_2d_106, np.float32).reshape(-1, 2)
        if face.landmark_2d_106
        else None,
    )


def singleton_face_ids(raw_manifest: Path) -> list[int]:
    """Faces `facesets cluster` left on their own: the pool --candidates rescues from."""
    manifest = read_json(raw_manifest)
    if manifest is None:
        raise FileNotFoundError(f"no raw manifest at {raw_manifest}")
    singles = manifest.get("singletons", {})
    return sorted(
        int(i) for i in (singles.get("face_ids", []) if isinstance(singles, dict) else singles)
    )


@dataclass(frozen=True)
class _Paths:
    """An export's paths, each checked against the service's roots."""

    out: Path
    refine_manifest: Path
    raw_manifest: Path | None  # with candidates only
    store: str


class ExportServicer(export_pb2_grpc.ExportServicer):
    """The clustering and inference services it calls are fixed when it starts (`facesets serve
    export --clustering ... --inference ...`, each with its own credentials)."""

    def _load_image(self, path: str | Path) -> np.ndarray:
        """A photo the store names, read only inside the roots (the store holds what clients
        sent)."""
        return load_image_oriented(self.roots.check_read(path, "image path"))

    def __init__(
        self,
        clustering: Endpoint | None,
        inference: Endpoint | None,
        roots: Roots | None = None,
    ) -> None:
        self.clustering = clustering
        self.inference = inference
        self.roots = roots or Roots()  # the folders requests may name; none given: nothing

    def ExportSwap(
        self, request: export_pb2.ExportSwapRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        peers = self.clustering, self.inference
        if peers[0] is None or peers[1] is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this export service was started without the clustering and inference "
                "services it calls (facesets serve export --clustering HOST:PORT "
                "--inference HOST:PORT)",
            )
            return
        try:
            params = ExportSwapParams.from_request(request)
        except InvalidParameter as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        out = required_path(context, request.out, "out", self.roots)
        refine_manifest = required_path(
            context, request.refine_manifest, "refine_manifest", self.roots
        )
        raw_manifest = (
            allowed_path(context, self.roots, request.raw_manifest, "raw_manifest")
            if request.candidates
            else None
        )
        store = str(allowed_path(context, self.roots, request.store, "store"))
        paths = _Paths(out, refine_manifest, raw_manifest, store)
        # Configured peers, known to run: a job waits for one that restarts (or boots).
        clustering = ClusteringClient(peers[0], wait_for_ready=True)
        inference = InferenceClient(peers[1], wait_for_ready=True)
        try:
            yield from locked_job(
                context,
                out,
                lambda progress: self._export(paths, params, clustering, inference, progress),
                create=True,
            )
        finally:
            clustering.close()
            inference.close()

    def _export(
        self,
        paths: _Paths,
        params: ExportSwapParams,
        clustering: ClusteringClient,
        inference: InferenceClient,
        progress: ProgressFn,
    ) -> dict[str, Any]:
        # A symbolic link inside OUT is refused before any face is read (swap checks again).
        Beneath(paths.out).refuse_links()
        specs = read_refine_manifest(paths.refine_manifest)
        disagreements = read_refine_disagreements(paths.refine_manifest)
        wanted = sorted(
            {face_id for spec in specs for face_id in spec.face_ids}
            | set(disagreement_face_ids(disagreements or []))
        )
        candidate_ids = singleton_face_ids(paths.raw_manifest) if paths.raw_manifest else []
        progress("read faces", 0, len(wanted) + len(candidate_ids))
        rows = {
            r.face_id: face_row(r)
            for r in clustering.read_faces(paths.store, True, wanted + candidate_ids)
        }
        faces_by_set = {
            spec.number: [rows[i] for i in spec.face_ids if i in rows] for spec in specs
        }
        candidates = [rows[i] for i in candidate_ids if i in rows] if paths.raw_manifest else None
        return swap.export_swap(
            faces_by_set,
            paths.out,
            params,
            load_image=self._load_image,
            count_faces=inference.count_faces,
            candidates=candidates,
            progress=progress,
            gates=read_refine_gates(paths.refine_manifest),
            lookalikes=read_refine_lookalikes(paths.refine_manifest),
            targets={spec.number: swap.SetTarget.of(spec) for spec in specs},
            disagreements=disagreements,
            disagreement_rows=rows,
        )

    def _inference_job(
        self,
        context: grpc.ServicerContext,
        build: Callable[[Request], Params],
        request: Request,
        out: Path,
        job: InferenceJob[Params],
        *,
        create: bool = True,
        service: str = "export",
        calls: str | None = None,
        failures: tuple[type[Exception], ...] = JOB_FAILURES,
    ) -> Iterator[common_pb2.JobEvent]:
        """Run a job that calls the inference service, holding `out` locked; a service started
        without one refuses it before its parameters are read (`build`).

        A failed inference call (`calls` names it in the message; None lets it through), an
        error in `failures` and a file system error end the call with a status that says so.
        """
        if self.inference is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this {service} service was started without the inference service it calls "
                "(facesets serve export --inference HOST:PORT)",
            )
            return
        try:
            params = build(request)
        except InvalidParameter as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            raise  # abort raises; this line tells type checkers so
        inference = InferenceClient(self.inference, wait_for_ready=True)
        inference_failures = (grpc.RpcError,) if calls is not None else ()
        try:
            yield from locked_job(
                context,
                out,
                lambda progress: job(params, inference, progress),
                create=create,
                failures=failures,
            )
        except inference_failures as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{calls}: {error.details()}")
        finally:
            inference.close()

    def Occlusion(
        self, request: export_pb2.OcclusionRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        out = required_path(context, request.out, "out", self.roots)
        if request.undo:
            yield from self._restore(context, out, undo_kind=occlusion.KIND)
            return

        def job(
            params: occlusion.OcclusionParams, inference: InferenceClient, progress: ProgressFn
        ) -> dict[str, Any]:
            scorer = ClipScoreScorer(inference, out)
            outcome = occlusion.occlusion_filter(out, params, scorer, progress=progress)
            return refresh_report(out, outcome.summary())

        yield from self._inference_job(
            context,
            occlusion.OcclusionParams.from_request,
            request,
            out,
            job,
            create=False,
            calls="ClipScore",
        )

    def DedupOptimize(
        self, request: export_pb2.DedupOptimizeRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        out = required_path(context, request.out, "out", self.roots)

        def job(
            params: dedup.DedupOptimizeParams, inference: InferenceClient, progress: ProgressFn
        ) -> dict[str, Any]:
            faces = InferenceFaces(inference, out)
            run = dedup.dedup_optimize(
                out, params, faces.count_faces, faces.embed, progress=progress
            )
            return refresh_report(out, dedup.summary(run, params.dry_run))

        yield from self._inference_job(
            context,
            dedup.DedupOptimizeParams.from_request,
            request,
            out,
            job,
            create=False,
            calls="inference",
            # InferenceFaces reports a face it could not count or embed as a RuntimeError.
            failures=(ValueError, RuntimeError, FileNotFoundError),
        )

    def Merge(
        self, request: export_pb2.MergeRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        out = required_path(context, request.out, "out", self.roots)
        try:
            params = merge.MergeParams.from_request(request)
        except InvalidParameter as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        yield from locked_job(
            context, out, lambda progress: refresh_report(out, merge.merge(out, params).summary())
        )

    def Restore(
        self, request: export_pb2.RestoreRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        out = required_path(context, request.out, "out", self.roots)
        if bool(request.run_id) == bool(request.faceset):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Restore needs a run id or a faceset")
        yield from self._restore(
            context, out, run_id=request.run_id or None, faceset=request.faceset or None
        )

    @staticmethod
    def _restore(
        context: grpc.ServicerContext,
        out: Path,
        *,
        run_id: str | None = None,
        faceset: str | None = None,
        undo_kind: str | None = None,
    ) -> Iterator[common_pb2.JobEvent]:
        def job() -> dict[str, Any]:
            chosen = run_id
            if undo_kind is not None:
                chosen = restore.last_run(out, undo_kind)
                if chosen is None:
                    return {"runs": [], "restored": [], "conflicts": [], "note": "nothing to undo"}
            outcome = restore.restore(out, run_id=chosen, faceset=faceset)
            found = {
                "runs": outcome.runs,
                "restored": outcome.restored,
                "conflicts": outcome.conflicts,
            }
            return refresh_report(out, found)

        yield from locked_job(context, out, lambda progress: job())

    def Report(
        self, request: export_pb2.ReportRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        out = required_path(context, request.out, "out", self.roots)
        yield from locked_job(
            context, out, lambda progress: report.build_report(out, progress).summary
        )

    # --- media: video targets -------------------------------------------------------------
    def GetInfo(
        self, request: export_pb2.GetMediaInfoRequest, context: grpc.ServicerContext
    ) -> export_pb2.MediaInfo:
        import scenedetect

        t = media_tools()
        return export_pb2.MediaInfo(
            ffmpeg_path=t.ffmpeg,
            ffmpeg_version=t.version,
            ffprobe_path=t.ffprobe or "",
            ffmpeg_source=t.source,
            scenedetect_version=scenedetect.__version__,
        )

    def PlanVideos(
        self, request: export_pb2.PlanVideosRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        src = required_path(context, request.src, "src", self.roots)
        out = required_path(context, request.out, "out", self.roots)
        match_dir = (
            allowed_path(context, self.roots, request.match_dir, "match_dir")
            if request.match_dir
            else None
        )

        def job(
            params: VideoPlanParams, inference: InferenceClient, progress: ProgressFn
        ) -> dict[str, Any]:
            return video_plan.plan_videos(src, out, params, inference.embed, progress, match_dir)

        yield from self._inference_job(
            context, VideoPlanParams.from_request, request, out, job, service="media"
        )

    def CutSegments(
        self, request: export_pb2.CutSegmentsRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        out = required_path(context, request.out, "out", self.roots)
        params = VideoCutParams.from_request(request)
        yield from locked_job(
            context, out, lambda progress: video_cut.cut_segments(out, params, progress)
        )


def register(servicer: ExportServicer) -> Callable[[grpc.Server], None]:
    def add(server: grpc.Server) -> None:
        export_pb2_grpc.add_ExportServicer_to_server(servicer, server)

    return add
