"""One decode of a video serves both the shot detector and the sampled frames.

A single ffmpeg process decodes the first video stream (on one thread: inference beside it
keeps the cores busy) and writes two raw BGR streams: every frame shrunk to the shot
detector's size (a pipe read by a thread feeding `ShotDetector`), and only the sampled frames
(ffmpeg's `select`) shrunk to the send size (a second pipe, read by the caller as it streams
frames to inference). Shots are therefore known when the pass ends, and frames are assigned to
them afterwards. Frames already in the frame log pass through without being yielded. No frame
is decoded twice or converted at full size (on Windows, where a child inherits no second pipe,
two ffmpeg processes decode the video, one stream each).

The small frames are shrunk without smoothing (`fast_bilinear`), as PySceneDetect shrinks its
own (linear interpolation); the sampled frames with area averaging, for the faces' sake.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from facesets.common import settings
from facesets.export.video.frames import VideoStream, select_expression, send_size
from facesets.export.video.probe import VideoError, tools
from facesets.export.video.shots import ShotDetector, detection_size


@functools.cache
def passthrough_flag() -> str:
    """ffmpeg's option that keeps every frame as decoded (no duplicates, no drops)."""
    found = re.search(r"version n?(\d+)\.(\d+)", tools().version)
    old = found is not None and (int(found[1]), int(found[2])) < (5, 1)
    return "-vsync" if old else "-fps_mode"  # -fps_mode arrived in 5.1; -vsync is going


def _kill(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.kill()


def _read_frames(pipe: IO[bytes], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Whole (h, w, 3) frames from a raw BGR pipe until it ends."""
    w, h = size
    frame_bytes = w * h * 3
    while len(data := pipe.read(frame_bytes)) == frame_bytes:  # whole unless the pipe ended
        yield np.frombuffer(data, np.uint8).reshape(h, w, 3)


class DecodePass:
    """`frames()` yields the wanted sampled frames; afterwards `detector` holds every frame."""

    def __init__(
        self,
        path: Path,
        stream: VideoStream,
        sample_fps: float,
        send_max_side: int,
        detector: ShotDetector,
    ) -> None:
        self.path = path
        self.stream = stream
        self.detector = detector
        self.small = detection_size(stream.width, stream.height)
        self.sent = send_size(stream.width, stream.height, send_max_side)
        self.sample_fps = sample_fps
        self.scale = stream.width / self.sent[0]  # maps boxes on a sent frame back
        self.decoded = 0  # frames the detector saw: where the stream really ended
        self.one_process = os.name == "posix"  # a child inherits a second pipe only there

    # --- the ffmpeg command lines ----------------------------------------------------------
    def _input(self) -> list[str]:
        threads = str(settings.export().video.decode_threads)
        return [
            tools().ffmpeg, "-nostdin", "-v", "error", "-threads", threads, "-i", str(self.path),
            "-filter_threads", threads,
        ]  # fmt: skip

    def _chains(self) -> tuple[str, str]:
        """The filter chains of the small frames (every one) and of the sampled frames."""
        (sw, sh), (bw, bh) = self.small, self.sent
        select = select_expression(self.stream.fps, self.sample_fps)
        return (
            f"scale={sw}:{sh}:flags=fast_bilinear,format=bgr24",
            f"select='{select}',scale={bw}:{bh}:flags=area,format=bgr24",
        )

    @staticmethod
    def _output(label: str, target: str) -> list[str]:
        return ["-map", label, passthrough_flag(), "passthrough", "-f", "rawvideo", target]

    def _start(
        self, messages: IO[bytes]
    ) -> tuple[list[subprocess.Popen[bytes]], IO[bytes], IO[bytes]]:
        """The running ffmpeg process(es), the small frames' pipe and the sampled frames' pipe.

        One process writes both streams where a child can inherit a second pipe (POSIX);
        elsewhere (Windows) two processes decode the video, one stream each."""
        small, sampled = self._chains()
        if not self.one_process:
            procs = [
                subprocess.Popen(
                    [
                        *self._input(),
                        "-filter_complex",
                        f"[0:v:0]{chain}[out]",
                        *self._output("[out]", "pipe:1"),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=messages,
                )  # fmt: skip
                for chain in (small, sampled)
            ]
            assert procs[0].stdout is not None and procs[1].stdout is not None
            return procs, procs[0].stdout, procs[1].stdout
        graph = f"[0:v:0]split=2[a][b];[a]{small}[small];[b]{sampled}[sampled]"
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                [*self._input(), "-filter_complex", graph, *self._output("[small]", "pipe:1"),
                 *self._output("[sampled]", f"pipe:{write_fd}")],
                stdout=subprocess.PIPE,
                stderr=messages,  # a damaged stream can say more than a pipe holds
                pass_fds=(write_fd,),
            )  # fmt: skip
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        assert proc.stdout is not None
        return [proc], proc.stdout, os.fdopen(read_fd, "rb")

    # --- the pass ---------------------------------------------------------------------------
    def frames(
        self, grid: list[int], wanted: set[int]
    ) -> Generator[tuple[int, np.ndarray], None, None]:
        """(frame number, BGR at the send size) of each wanted frame of the grid, in order.

        VideoError when ffmpeg decodes nothing, or when the stream ends more than a second
        before its stated frame count (the frames before still come out)."""
        failure: list[BaseException] = []
        with tempfile.TemporaryFile() as messages:
            procs, small, sampled = self._start(messages)
            shots = threading.Thread(target=self._detect, args=(small, procs, failure), daemon=True)
            shots.start()
            finished = False
            try:
                found = _read_frames(sampled, self.sent)
                for frame, image in zip(grid, found, strict=False):
                    if frame in wanted:
                        yield frame, image
                for _ in found:  # frames past the stated count: drained so ffmpeg ends
                    pass
                finished = True
            finally:
                if not finished:  # the consumer stopped early: the detector sees the end
                    _kill(procs)
                shots.join()
                sampled.close()
                for proc in procs:
                    proc.wait()
                    if proc.stdout is not None:
                        proc.stdout.close()
            messages.seek(0)
            said = messages.read().decode(errors="replace").strip()
        if failure:
            raise failure[0]
        self._check_end(grid, said)

    def _detect(
        self, small: IO[bytes], procs: list[subprocess.Popen[bytes]], failure: list[BaseException]
    ) -> None:
        try:
            for image in _read_frames(small, self.small):
                self.detector.feed(image)
                self.decoded += 1
        except BaseException as error:  # reported by the caller's thread
            failure.append(error)
            _kill(procs)  # else ffmpeg waits on this pipe and the sampled frames stop

    def _check_end(self, grid: list[int], said: str) -> None:
        if self.decoded == 0:
            raise VideoError(f"unreadable: {said.splitlines()[-1] if said else 'no frame decoded'}")
        ends_near = self.stream.frame_count - self.stream.fps  # containers estimate the count
        missing = [f for f in grid if f >= self.decoded]
        if self.decoded < ends_near and missing:
            raise VideoError(
                f"truncated: the video stream ended at frame {self.decoded}, "
                f"before sampled frame {missing[0]}"
            )
