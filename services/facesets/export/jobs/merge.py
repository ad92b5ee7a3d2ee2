"""Merge: one faceset of an export joins another."""

from __future__ import annotations

from facesets.contract.export import MergeParams
from facesets.export.jobs.context import ExportJob, JobContext
from facesets.export.maintenance import merge
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.v1 import export_pb2

Request = export_pb2.MergeRequest


class Merge(ExportJob[Request, MergeParams]):
    request = Request
    params = MergeParams

    def run(self, ctx: JobContext[Request], params: MergeParams) -> dict[str, object]:
        out = ctx.out
        return refresh_report(out, merge.merge(out, params).summary())
