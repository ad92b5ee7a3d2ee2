"""Split: crops of a faceset that are someone else become a new faceset or join another."""

from __future__ import annotations

from facesets.contract import review
from facesets.export.jobs.context import JobContext
from facesets.export.jobs.reviewing import ReviewJob
from facesets.export.maintenance import review_actions
from facesets.export.maintenance.review_actions import Summary
from facesets.v1 import export_pb2

Request = export_pb2.SplitRequest


class Split(ReviewJob[Request]):
    request = Request

    def validate(self, ctx: JobContext[Request]) -> None:
        request = ctx.request
        review.SplitRequest(ctx.out, request.faceset, tuple(request.crops), request.into)

    def act(self, ctx: JobContext[Request]) -> tuple[Summary, set[str]]:
        request = ctx.request
        crops = tuple(request.crops)
        done = review_actions.split(ctx.out, request.faceset, crops, request.into)
        return done, {request.faceset, request.into}
