"""MarkDifferent: two look-alike facesets are different people, a cannot-link later
refines and consolidations honour."""

from __future__ import annotations

from facesets.contract import review
from facesets.export.jobs.context import BadRequest, ExportJob, JobContext, NoParams
from facesets.export.maintenance import review_actions
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.v1 import export_pb2

Request = export_pb2.MarkDifferentRequest


class MarkDifferent(ExportJob[Request, NoParams]):
    request = Request
    params = NoParams

    def check(self, ctx: JobContext[Request], params: NoParams) -> None:
        ctx.out  # noqa: B018  # checked first: the folder the job writes
        request = ctx.request
        try:
            review.MarkDifferentRequest(ctx.out, request.faceset, request.other)
        except ValueError as error:
            raise BadRequest(str(error)) from error
        ctx.optional(request.store, "store")  # inside the roots, before anything is locked

    def run(self, ctx: JobContext[Request], params: NoParams) -> dict[str, object]:
        request = ctx.request
        store = ctx.optional(request.store, "store")
        summary = review_actions.mark_different(ctx.out, request.faceset, request.other, store)
        return refresh_report(ctx.out, summary.as_dict(), {request.faceset, request.other})
