"""GetInfo: the ffmpeg and PySceneDetect the service's video jobs run with."""

from __future__ import annotations

from facesets.export.jobs.context import ExportQuery
from facesets.export.video.probe import tools
from facesets.v1 import export_pb2

Request = export_pb2.GetMediaInfoRequest


class MediaInfo(ExportQuery[Request, export_pb2.MediaInfo]):
    request = Request
    reply = export_pb2.MediaInfo

    def answer(self, request: Request) -> export_pb2.MediaInfo:
        import scenedetect  # only here: the video jobs import it when they run

        found = tools()
        return export_pb2.MediaInfo(
            ffmpeg_path=found.ffmpeg,
            ffmpeg_version=found.version,
            ffprobe_path=found.ffprobe or "",
            ffmpeg_source=found.source,
            scenedetect_version=scenedetect.__version__,
        )
