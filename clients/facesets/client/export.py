"""Typed client of the Export service."""

from __future__ import annotations

from collections.abc import Iterator

from facesets.client import defaults
from facesets.client.channel import Endpoint, call_with_retry, open_channel, wait_until_serving
from facesets.client.resumable import rerun_on_restart
from facesets.contract.export import (
    DedupOptimizeRequest,
    ExportSwapRequest,
    MergeRequest,
    OcclusionRequest,
    ReportRequest,
    RestoreRequest,
)
from facesets.contract.review import (
    MarkDifferentRequest,
    NameRequest,
    RejectCropsRequest,
    SplitRequest,
)
from facesets.contract.video import VideoCutRequest, VideoPlanRequest
from facesets.v1 import common_pb2, export_pb2, export_pb2_grpc

SERVICE = "facesets.v1.Export"


class ExportClient:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | None = None,
        wait_for_ready: bool = False,
    ) -> None:
        """`timeout`: how long the first contact may take (defaults.CONNECT_TIMEOUT_S) before a
        ConnectionProblem says what is wrong; `wait_for_ready`: the service is known to be
        starting, so the first contact waits as long as a restart (defaults.RETRY_WINDOW_S)."""
        self.endpoint = endpoint
        self.channel = open_channel(endpoint, timeout=timeout, wait_for_ready=wait_for_ready)
        self.stub = export_pb2_grpc.ExportStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, window_s: float = defaults.RETRY_WINDOW_S) -> None:
        wait_until_serving(self.channel, SERVICE, window_s)

    def run(self, request: ExportJobRequest) -> Iterator[common_pb2.JobEvent]:
        """Any export or media job: progress events, then the outcome; the job runs again if
        the service restarts mid-way (a video plan resumes from its frame logs)."""
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: request.call(self.stub), request.stage
        )

    def export_swap(self, request: ExportSwapRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def report(self, request: ReportRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def plan_videos(self, request: VideoPlanRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def cut_segments(self, request: VideoCutRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def occlusion(self, request: OcclusionRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def dedup_optimize(self, request: DedupOptimizeRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def restore(self, request: RestoreRequest) -> Iterator[common_pb2.JobEvent]:
        return self.run(request)

    def merge(self, request: MergeRequest) -> Iterator[common_pb2.JobEvent]:
        """One faceset joins another (reversible with restore); a re-run changes nothing."""
        return self.run(request)

    def review(self, request: ReviewRequest) -> Iterator[common_pb2.JobEvent]:
        """A review decision (reject, split, name, mark different): a maintenance run."""
        return self.run(request)

    def info(self) -> export_pb2.MediaInfo:
        """The media tools the service runs with (ffmpeg path, version and source)."""
        return call_with_retry(
            lambda: self.stub.GetInfo(
                export_pb2.GetMediaInfoRequest(), timeout=defaults.RPC_TIMEOUT_S
            ),
            self.channel,
            SERVICE,
        )


ExportJobRequest = (
    ExportSwapRequest
    | ReportRequest
    | VideoPlanRequest
    | VideoCutRequest
    | OcclusionRequest
    | DedupOptimizeRequest
    | RestoreRequest
    | MergeRequest
    | RejectCropsRequest
    | SplitRequest
    | NameRequest
    | MarkDifferentRequest
)
ReviewRequest = RejectCropsRequest | SplitRequest | NameRequest | MarkDifferentRequest
