"""MarkDifferent: two look-alike facesets are different people, a cannot-link later
refines and consolidations honour."""

from __future__ import annotations

from facesets.contract import review
from facesets.export.jobs.context import JobContext
from facesets.export.jobs.reviewing import ReviewJob
from facesets.export.maintenance import review_actions
from facesets.export.maintenance.review_actions import Summary
from facesets.v1 import export_pb2

Request = export_pb2.MarkDifferentRequest


class MarkDifferent(ReviewJob[Request]):
    request = Request

    def validate(self, ctx: JobContext[Request]) -> None:
        request = ctx.request
        review.MarkDifferentRequest(ctx.out, request.faceset, request.other)
        ctx.optional(request.store, "store")  # inside the roots, before anything is locked

    def act(self, ctx: JobContext[Request]) -> tuple[Summary, set[str]]:
        request = ctx.request
        store = ctx.optional(request.store, "store")
        done = review_actions.mark_different(ctx.out, request.faceset, request.other, store)
        return done, {request.faceset, request.other}
