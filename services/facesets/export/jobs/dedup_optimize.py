"""DedupOptimize: collapse near-duplicate PNGs of each faceset to the better one."""

from __future__ import annotations

from facesets.contract.export import DedupOptimizeParams
from facesets.export.jobs.context import ExportJob, JobContext, Peer
from facesets.export.maintenance import dedup
from facesets.export.maintenance.inference_calls import InferenceFaces
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.v1 import export_pb2

Request = export_pb2.DedupOptimizeRequest


class DedupOptimize(ExportJob[Request, DedupOptimizeParams]):
    request = Request
    params = DedupOptimizeParams
    needs = (Peer.INFERENCE,)
    peer_calls = "inference"
    # InferenceFaces reports a face it could not count or embed as a RuntimeError.
    failures = (ValueError, RuntimeError, FileNotFoundError)

    def run(self, ctx: JobContext[Request], params: DedupOptimizeParams) -> dict[str, object]:
        out = ctx.out
        faces = InferenceFaces(ctx.inference, out)
        run = dedup.dedup_optimize(
            out, params, faces.count_faces, faces.embed, progress=ctx.progress
        )
        return refresh_report(out, dedup.summary(run, params.dry_run))
