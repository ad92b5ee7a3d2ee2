"""Occlusion: set aside the PNGs ClipScore finds occluded (or undo the last such run)."""

from __future__ import annotations

from facesets.contract.export import OcclusionParams
from facesets.export.jobs.context import ExportJob, JobContext, Peer
from facesets.export.jobs.restoring import restore_runs
from facesets.export.maintenance import occlusion
from facesets.export.maintenance.inference_calls import ClipScoreScorer
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.v1 import export_pb2

Request = export_pb2.OcclusionRequest


class Occlusion(ExportJob[Request, OcclusionParams]):
    request = Request
    params = OcclusionParams
    needs = (Peer.INFERENCE,)
    peer_calls = "ClipScore"

    def calls(self, request: Request) -> tuple[Peer, ...]:
        return () if request.undo else self.needs  # an undo only moves files back

    def run(self, ctx: JobContext[Request], params: OcclusionParams) -> dict[str, object]:
        out = ctx.out
        if ctx.request.undo:
            return restore_runs(out, undo_kind=occlusion.KIND)
        scorer = ClipScoreScorer(ctx.inference, out)
        outcome = occlusion.occlusion_filter(out, params, scorer, progress=ctx.progress)
        return refresh_report(out, outcome.summary())
