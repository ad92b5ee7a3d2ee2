"""Report: (re)write the review report of an export folder from its manifests."""

from __future__ import annotations

from facesets.export.jobs.context import ExportJob, JobContext, NoParams
from facesets.export.report import build_report
from facesets.v1 import export_pb2

Request = export_pb2.ReportRequest


class Report(ExportJob[Request, NoParams]):
    request = Request
    params = NoParams

    def run(self, ctx: JobContext[Request], params: NoParams) -> dict[str, object]:
        return build_report(ctx.out, ctx.progress).summary
