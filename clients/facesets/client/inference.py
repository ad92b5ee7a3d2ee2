"""Typed client of the Inference service."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from facesets.client import defaults
from facesets.client.channel import (
    Endpoint,
    call_with_retry,
    open_channel,
    replica_count,
    wait_until_serving,
)
from facesets.client.files import FileStamp, open_regular, regular_size
from facesets.client.png import encode_png
from facesets.client.resumable import ResumableStream, run_parallel
from facesets.v1 import common_pb2, inference_pb2, inference_pb2_grpc

if TYPE_CHECKING:  # numpy loads where arrays are made: the `facesets` command mostly never does
    import numpy as np

SERVICE = "facesets.v1.Inference"


@dataclass(frozen=True)
class ImageInput:
    """An image to send: by path (read here, or by the service when `by_path`) or bytes."""

    id: str
    path: str | None = None
    data: bytes | None = None
    detect_size: int = 0  # the detector's long side for this image; 0: the service's own
    # The folder the file was found in: read here only while it lies inside (never through a
    # link swapped in after the listing). A service reading by path confines it to its roots.
    within: str | None = None
    # The file as it was when its id (a digest) was computed: a file that changed since is
    # answered ERROR_REASON_CHANGED, unread, here or by the service reading it by path.
    expect: FileStamp | None = None


def _duplicate(image_id: str) -> ValueError:
    return ValueError(
        f"two inputs share the id {image_id!r} in one call; each input needs its own id "
        "(answers are matched to inputs by id)"
    )


def _too_large(image_id: str, size: int, limit: int) -> common_pb2.ImageResult:
    return common_pb2.ImageResult(
        id=image_id,
        error=common_pb2.ImageError(
            reason=common_pb2.ERROR_REASON_TOO_LARGE,
            message=f"{size:,} bytes is over the {limit:,}-byte message limit",
        ),
    )


def _unreadable(image_id: str, path: str, error: OSError) -> common_pb2.ImageResult:
    text = f"{path}: {error.strerror}" if error.strerror else str(error)
    return common_pb2.ImageResult(
        id=image_id,
        error=common_pb2.ImageError(
            reason=common_pb2.ERROR_REASON_UNREADABLE, message=f"cannot read {text}"
        ),
    )


def _changed(image_id: str, path: str) -> common_pb2.ImageResult:
    return common_pb2.ImageResult(
        id=image_id,
        error=common_pb2.ImageError(
            reason=common_pb2.ERROR_REASON_CHANGED,
            message=f"{path} changed since it was hashed; it was not sent",
        ),
    )


class InferenceClient:
    def __init__(
        self,
        endpoint: Endpoint,
        max_message_bytes: int = defaults.MAX_MESSAGE_BYTES,
        *,
        timeout: float | None = None,
        wait_for_ready: bool = False,
    ) -> None:
        """`timeout`: how long the first contact may take (defaults.CONNECT_TIMEOUT_S) before a
        ConnectionProblem says what is wrong; `wait_for_ready`: the service is known to be
        starting, so the first contact waits as long as a restart (defaults.RETRY_WINDOW_S)."""
        self.endpoint = endpoint
        self.channel = open_channel(
            endpoint, balance=SERVICE, timeout=timeout, wait_for_ready=wait_for_ready
        )
        # Calls are what gRPC balances: with several replicas, several streams at once.
        self.replicas = replica_count(endpoint.address)
        self.stub = inference_pb2_grpc.InferenceStub(self.channel)
        self.max_bytes = max_message_bytes - 4096  # room for the message's own fields
        self.restarts = 0
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()  # its open streams end instead of waiting for a restart
        self.channel.close()

    def wait_ready(self, window_s: float = defaults.RETRY_WINDOW_S) -> None:
        """Until the service serves; with several replicas, also until each has answered once
        (at most defaults.REPLICAS_MEET_S)."""
        wait_until_serving(self.channel, SERVICE, window_s)
        if self.replicas > 1:
            self.meet_replicas()

    def meet_replicas(self, window_s: float = defaults.REPLICAS_MEET_S) -> set[str]:
        """The replicas that answered GetInfo within window_s, asked until all have.

        gRPC's round robin gives a call only to a replica its channel has already connected;
        streams opened while one is still connecting all go to the others, and a short run can
        end before it gets a share (seen on a busy machine: 54 photos, one replica of three
        with none). Each call goes to the next connected replica, so asking until every name
        has answered waits just as long as the connections take. A replica that is down is
        left after window_s; calls are balanced again as the run goes, so it joins later.
        """
        seen: set[str] = set()
        deadline = time.monotonic() + window_s
        while len(seen) < self.replicas:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                info = self.stub.GetInfo(inference_pb2.GetInfoRequest(), timeout=left)
            except grpc.RpcError:
                break  # the run's own calls retry and report what is wrong
            if info.replica in seen:
                time.sleep(defaults.REPLICAS_MEET_POLL_S)
            seen.add(info.replica)
        return seen

    def info(self) -> inference_pb2.ModelInfo:
        return call_with_retry(
            lambda: self.stub.GetInfo(
                inference_pb2.GetInfoRequest(), timeout=defaults.RPC_TIMEOUT_S
            ),
            self.channel,
            SERVICE,
        )

    def _requests(
        self, images: Iterable[ImageInput], by_path: bool, refused: list[common_pb2.ImageResult]
    ) -> Iterator[common_pb2.ImageRequest]:
        seen: set[str] = set()
        for image in images:
            if image.id in seen:
                # Answers are matched to inputs by id: a second input with the same id would
                # take the first one's place and one of them would go unanswered.
                raise _duplicate(image.id)
            seen.add(image.id)
            if by_path and image.path is not None:
                request = common_pb2.ImageRequest(
                    id=image.id, path=image.path, detect_size=image.detect_size
                )
                if image.expect is not None:
                    request.expect.size = image.expect.size
                    request.expect.mtime_ns = image.expect.mtime_ns
                yield request
                continue
            data = image.data
            if data is None:
                assert image.path is not None
                try:
                    # A missing, unreadable or non-regular file is this image's error result;
                    # the stream goes on with the images after it.
                    size = regular_size(image.path)
                    if size > self.max_bytes:
                        refused.append(_too_large(image.id, size, self.max_bytes))
                        continue
                    with open_regular(image.path, image.within) as handle:
                        data = handle.read()
                        if image.expect is not None and not image.expect.matches(handle.fileno()):
                            refused.append(_changed(image.id, image.path))
                            continue
                except OSError as error:
                    refused.append(_unreadable(image.id, image.path, error))
                    continue
            if len(data) > self.max_bytes:
                refused.append(_too_large(image.id, len(data), self.max_bytes))
                continue
            yield common_pb2.ImageRequest(id=image.id, data=data, detect_size=image.detect_size)

    def _stream(
        self, method: str, images: Iterable[ImageInput], by_path: bool, max_inflight: int
    ) -> Iterator:
        if isinstance(images, Collection):  # known up front: refused before anything is sent
            counts = Counter(image.id for image in images)
            repeated = next((i for i, n in counts.items() if n > 1), None)
            if repeated is not None:
                raise _duplicate(repeated)
        refused: list = []
        several = self.replicas > 1
        streams = [
            ResumableStream(
                self.channel,
                SERVICE,
                getattr(self.stub, method),
                key=lambda request: request.id,
                answers=lambda result: (result.id,),
                final=lambda result: result.error.reason != common_pb2.ERROR_REASON_NOT_DONE,
                max_inflight=max_inflight,
                closed=self._closed,
                per_call=defaults.REPLICA_CALL_IMAGES if several else None,
            )
            for _ in range(self.replicas * defaults.REPLICA_STREAMS if several else 1)
        ]
        try:
            for result in run_parallel(streams, self._requests(images, by_path, refused)):
                while refused:
                    yield refused.pop(0)  # in the order the images came
                yield result
            while refused:
                yield refused.pop(0)  # in the order the images came
        finally:
            self.restarts += sum(stream.restarts for stream in streams)

    def embed(
        self,
        images: Iterable[ImageInput],
        by_path: bool = False,
        max_inflight: int = defaults.EMBED_INFLIGHT,
    ) -> Iterator[common_pb2.ImageResult]:
        """One result per image, in completion order; survives service restarts.

        Each input needs its own id: a list with a repeated id is refused with ValueError
        before anything is sent; from a lazy iterable, the repeated input raises ValueError
        (once the inputs before it are answered) and is never sent."""
        return self._stream("Embed", images, by_path, max_inflight)

    def detect(
        self,
        images: Iterable[ImageInput],
        by_path: bool = False,
        max_inflight: int = defaults.EMBED_INFLIGHT,
    ) -> Iterator[common_pb2.ImageResult]:
        return self._stream("Detect", images, by_path, max_inflight)

    def count_faces_stream(
        self,
        images: Iterable[ImageInput],
        by_path: bool = False,
        max_inflight: int = defaults.EMBED_INFLIGHT,
    ) -> Iterator:
        return self._stream("CountFaces", images, by_path, max_inflight)

    def count_faces(self, crops: list[np.ndarray]) -> list[int]:
        """Faces found in each BGR image (PNG-encoded on the way)."""
        inputs = []
        for i, crop in enumerate(crops):
            inputs.append(ImageInput(id=str(i), data=encode_png(crop)))
        counts = [0] * len(crops)
        for result in self.count_faces_stream(inputs):
            if result.HasField("error"):
                raise RuntimeError(f"CountFaces failed for a crop: {result.error.message}")
            counts[int(result.id)] = result.count
        return counts

    def clip_scores(
        self,
        images: list[ImageInput],
        prompts: list[str],
        max_inflight: int = defaults.EMBED_INFLIGHT,
    ) -> np.ndarray:
        """(images, prompts) probabilities, each row a softmax over the prompts (ClipScore);
        survives service restarts (every request carries the prompts)."""

        def requests() -> Iterator[inference_pb2.ClipScoreRequest]:
            for image in images:
                data = image.data
                if data is None and image.path is not None:
                    with open(image.path, "rb") as handle:
                        data = handle.read()
                yield inference_pb2.ClipScoreRequest(
                    image=common_pb2.ImageRequest(id=image.id, data=data or b""), prompts=prompts
                )

        stream = ResumableStream(
            self.channel,
            SERVICE,
            self.stub.ClipScore,
            key=lambda request: request.image.id,
            answers=lambda result: (result.id,),
            final=lambda result: result.error.reason != common_pb2.ERROR_REASON_NOT_DONE,
            max_inflight=max_inflight,
            closed=self._closed,
        )
        scores: dict[str, list[float]] = {}
        for result in stream.run(requests()):
            if result.HasField("error"):
                raise RuntimeError(f"ClipScore failed for {result.id}: {result.error.message}")
            scores[result.id] = list(result.scores)
        self.restarts += stream.restarts
        import numpy as np

        return np.array([scores[image.id] for image in images], dtype=np.float32).reshape(
            len(images), len(prompts)
        )


def rpc_error_text(error: grpc.RpcError) -> str:
    return f"{error.code().name}: {error.details()}"
