"""Typed client of the Export service."""

from __future__ import annotations

from collections.abc import Iterator

from facesets.client import defaults
from facesets.client.channel import Endpoint, call_with_retry, open_channel, wait_until_serving
from facesets.client.resumable import rerun_on_restart
from facesets.v1 import common_pb2, export_pb2, export_pb2_grpc

SERVICE = "facesets.v1.Export"


class ExportClient:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.channel = open_channel(endpoint)
        self.stub = export_pb2_grpc.ExportStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, window_s: float = defaults.RETRY_WINDOW_S) -> None:
        wait_until_serving(self.channel, SERVICE, window_s)

    def export_swap(self, request: export_pb2.ExportSwapRequest) -> Iterator[common_pb2.JobEvent]:
        """Progress events, then the outcome; run again if the service restarts mid-way."""
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: self.stub.ExportSwap(request), "ExportSwap"
        )

    def report(self, out: str) -> Iterator[common_pb2.JobEvent]:
        request = export_pb2.ReportRequest(out=out)
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: self.stub.Report(request), "Report"
        )

    def info(self) -> export_pb2.MediaInfo:
        """The media tools the service runs with (ffmpeg path, version and source)."""
        return call_with_retry(
            lambda: self.stub.GetInfo(
                export_pb2.GetMediaInfoRequest(), timeout=defaults.RPC_TIMEOUT_S
            ),
            self.channel,
            SERVICE,
        )

    def plan_videos(self, request: export_pb2.PlanVideosRequest) -> Iterator[common_pb2.JobEvent]:
        """Progress, then the plan's summary; a rerun after a restart resumes from frame logs."""
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: self.stub.PlanVideos(request), "PlanVideos"
        )

    def cut_segments(self, request: export_pb2.CutSegmentsRequest) -> Iterator[common_pb2.JobEvent]:
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: self.stub.CutSegments(request), "CutSegments"
        )

    def occlusion(self, request: export_pb2.OcclusionRequest) -> Iterator[common_pb2.JobEvent]:
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: self.stub.Occlusion(request), "Occlusion"
        )

    def dedup_optimize(
        self, request: export_pb2.DedupOptimizeRequest
    ) -> Iterator[common_pb2.JobEvent]:
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: self.stub.DedupOptimize(request), "DedupOptimize"
        )

    def restore(self, request: export_pb2.RestoreRequest) -> Iterator[common_pb2.JobEvent]:
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: self.stub.Restore(request), "Restore"
        )

    def merge(self, request: export_pb2.MergeRequest) -> Iterator[common_pb2.JobEvent]:
        """One faceset joins another (reversible with restore); a re-run changes nothing."""
        yield from rerun_on_restart(
            self.channel, SERVICE, lambda: self.stub.Merge(request), "Merge"
        )
