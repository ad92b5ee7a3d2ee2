"""Name: a faceset takes a person's name (manifest, report, .fsz file names)."""

from __future__ import annotations

from facesets.contract import review
from facesets.export.jobs.context import BadRequest, ExportJob, JobContext, NoParams
from facesets.export.maintenance import review_actions
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.v1 import export_pb2

Request = export_pb2.NameRequest


class Name(ExportJob[Request, NoParams]):
    request = Request
    params = NoParams

    def check(self, ctx: JobContext[Request], params: NoParams) -> None:
        ctx.out  # noqa: B018  # checked first: the folder the job writes
        request = ctx.request
        try:
            review.NameRequest(ctx.out, request.faceset, request.name)
        except ValueError as error:
            raise BadRequest(str(error)) from error

    def run(self, ctx: JobContext[Request], params: NoParams) -> dict[str, object]:
        request = ctx.request
        summary = review_actions.name(ctx.out, request.faceset, request.name)
        return refresh_report(ctx.out, summary.as_dict(), {request.faceset})
