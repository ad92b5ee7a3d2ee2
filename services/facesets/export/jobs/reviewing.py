"""What the four review decisions (`facesets review`) share: the request checked as the
contract checks it (a bad one answers INVALID_ARGUMENT before anything is locked), then the
action (a maintenance run), then the report pages of the facesets it touched."""

from __future__ import annotations

from abc import abstractmethod
from typing import TypeVar

from google.protobuf.message import Message

from facesets.export.jobs.context import BadRequest, ExportJob, JobContext, NoParams
from facesets.export.maintenance.report_refresh import refresh_report
from facesets.export.maintenance.review_actions import Summary

R = TypeVar("R", bound=Message)


class ReviewJob(ExportJob[R, NoParams]):
    params = NoParams

    def check(self, ctx: JobContext[R], params: NoParams) -> None:
        ctx.out  # noqa: B018  # checked first: the folder the job writes
        try:
            self.validate(ctx)
        except ValueError as error:
            raise BadRequest(str(error)) from error

    @abstractmethod
    def validate(self, ctx: JobContext[R]) -> None:
        """Build the contract's request from the RPC's (its checks raise ValueError)."""

    @abstractmethod
    def act(self, ctx: JobContext[R]) -> tuple[Summary, set[str]]:
        """Make the decision; its summary and the facesets it touched."""

    def run(self, ctx: JobContext[R], params: NoParams) -> dict[str, object]:
        summary, touched = self.act(ctx)
        return refresh_report(ctx.out, summary.as_dict(), touched - {""})
