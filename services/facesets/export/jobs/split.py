"""Split: crops of a faceset that are someone else become a new faceset or join another."""

from __future__ import annotations

from facesets.contract import review
from facesets.export.jobs.context import BadRequest, ExportJob, JobContext, NoParams
from facesets.export.maintenance import review_actions
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.v1 import export_pb2

Request = export_pb2.SplitRequest


class Split(ExportJob[Request, NoParams]):
    request = Request
    params = NoParams

    def check(self, ctx: JobContext[Request], params: NoParams) -> None:
        ctx.out  # noqa: B018  # checked first: the folder the job writes
        request = ctx.request
        try:
            review.SplitRequest(ctx.out, request.faceset, tuple(request.crops), request.into)
        except ValueError as error:
            raise BadRequest(str(error)) from error

    def run(self, ctx: JobContext[Request], params: NoParams) -> dict[str, object]:
        request = ctx.request
        crops = tuple(request.crops)
        summary = review_actions.split(ctx.out, request.faceset, crops, request.into)
        return refresh_report(ctx.out, summary.as_dict(), {request.faceset, request.into} - {""})
