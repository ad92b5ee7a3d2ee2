"""CutSegments: cut every planned segment with the service's ffmpeg."""

from __future__ import annotations

from facesets.contract.video import VideoCutParams
from facesets.export.jobs.context import ExportJob, JobContext
from facesets.export.video import cut
from facesets.v1 import export_pb2

Request = export_pb2.CutSegmentsRequest


class CutSegments(ExportJob[Request, VideoCutParams]):
    request = Request
    params = VideoCutParams

    def run(self, ctx: JobContext[Request], params: VideoCutParams) -> dict[str, object]:
        return cut.cut_segments(ctx.out, params, ctx.progress, ctx.roots)
