"""PlanVideos: the segments of each video under SRC worth cutting, written as a plan in OUT
(tracks matched against a faceset's images by the inference service's Embed)."""

from __future__ import annotations

from pathlib import Path

from facesets.contract.video import VideoPlanParams
from facesets.export.jobs.context import BadRequest, ExportJob, JobContext, Peer, Writes
from facesets.export.video import plan
from facesets.v1 import export_pb2

Request = export_pb2.PlanVideosRequest


class PlanVideos(ExportJob[Request, VideoPlanParams]):
    request = Request
    params = VideoPlanParams
    needs = (Peer.INFERENCE,)

    @staticmethod
    def _src(ctx: JobContext[Request]) -> Path:
        return ctx.required(ctx.request.src, "src")

    def check(self, ctx: JobContext[Request], params: VideoPlanParams) -> None:
        src = self._src(ctx)
        if ctx.out.resolve() == src.resolve():
            # Clips cut into the videos' own folder would be planned as videos next time.
            raise BadRequest(f"OUT is SRC ({src}): name another folder for the plan and clips")
        ctx.optional(ctx.request.match_dir, "match_dir")

    def writes(self, ctx: JobContext[Request], params: VideoPlanParams) -> Writes:
        return Writes([ctx.out], create=True)

    def run(self, ctx: JobContext[Request], params: VideoPlanParams) -> dict[str, object]:
        match_dir = ctx.optional(ctx.request.match_dir, "match_dir")
        return plan.plan_videos(
            self._src(ctx), ctx.out, params, ctx.inference.embed, ctx.progress, match_dir
        )
