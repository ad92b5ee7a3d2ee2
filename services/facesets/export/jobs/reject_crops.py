"""RejectCrops: crops of a faceset set aside (a review decision, restorable)."""

from __future__ import annotations

from facesets.contract import review
from facesets.export.jobs.context import JobContext
from facesets.export.jobs.reviewing import ReviewJob
from facesets.export.maintenance import review_actions
from facesets.export.maintenance.review_actions import Summary
from facesets.v1 import export_pb2

Request = export_pb2.RejectCropsRequest


class RejectCrops(ReviewJob[Request]):
    request = Request

    def validate(self, ctx: JobContext[Request]) -> None:
        request = ctx.request
        review.RejectCropsRequest(ctx.out, request.faceset, tuple(request.crops))

    def act(self, ctx: JobContext[Request]) -> tuple[Summary, set[str]]:
        request = ctx.request
        done = review_actions.reject(ctx.out, request.faceset, tuple(request.crops))
        return done, {request.faceset}
