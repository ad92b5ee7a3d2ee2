"""Name: a faceset takes a person's name (manifest, report, .fsz file names)."""

from __future__ import annotations

from facesets.contract import review
from facesets.export.jobs.context import JobContext
from facesets.export.jobs.reviewing import ReviewJob
from facesets.export.maintenance import review_actions
from facesets.export.maintenance.review_actions import Summary
from facesets.v1 import export_pb2

Request = export_pb2.NameRequest


class Name(ReviewJob[Request]):
    request = Request

    def validate(self, ctx: JobContext[Request]) -> None:
        request = ctx.request
        review.NameRequest(ctx.out, request.faceset, request.name)

    def act(self, ctx: JobContext[Request]) -> tuple[Summary, set[str]]:
        request = ctx.request
        done = review_actions.name(ctx.out, request.faceset, request.name)
        return done, {request.faceset}
