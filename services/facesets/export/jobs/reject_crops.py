"""RejectCrops: crops of a faceset set aside (a review decision, restorable)."""

from __future__ import annotations

from facesets.contract import review
from facesets.export.jobs.context import BadRequest, ExportJob, JobContext, NoParams
from facesets.export.maintenance import review_actions
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.v1 import export_pb2

Request = export_pb2.RejectCropsRequest


class RejectCrops(ExportJob[Request, NoParams]):
    request = Request
    params = NoParams

    def check(self, ctx: JobContext[Request], params: NoParams) -> None:
        ctx.out  # noqa: B018  # checked first: the folder the job writes
        request = ctx.request
        try:
            review.check_faceset(request.faceset)
            review.check_crops(tuple(request.crops))
        except ValueError as error:
            raise BadRequest(str(error)) from error

    def run(self, ctx: JobContext[Request], params: NoParams) -> dict[str, object]:
        request = ctx.request
        summary = review_actions.reject(ctx.out, request.faceset, tuple(request.crops))
        return refresh_report(ctx.out, summary.as_dict(), {request.faceset})
