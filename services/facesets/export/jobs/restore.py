"""Restore: put back what a maintenance run (or every run, for one faceset) moved."""

from __future__ import annotations

from facesets.export.jobs.context import BadRequest, ExportJob, JobContext, NoParams
from facesets.export.jobs.restoring import restore_runs
from facesets.v1 import export_pb2

Request = export_pb2.RestoreRequest


class Restore(ExportJob[Request, NoParams]):
    request = Request
    params = NoParams

    def check(self, ctx: JobContext[Request], params: NoParams) -> None:
        ctx.out  # noqa: B018  # checked first: the folder the job writes
        if bool(ctx.request.run_id) == bool(ctx.request.faceset):
            raise BadRequest("Restore needs a run id or a faceset")

    def run(self, ctx: JobContext[Request], params: NoParams) -> dict[str, object]:
        request = ctx.request
        return restore_runs(ctx.out, run_id=request.run_id or None, faceset=request.faceset or None)
