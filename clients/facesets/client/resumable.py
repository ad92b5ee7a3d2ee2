"""Streams that survive a service restart: what was sent and not answered is sent again."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Generic, TypeVar

import grpc
import structlog

from facesets.client.channel import ServiceUnavailableError, is_transient, wait_until_serving
from facesets.common import settings

log = structlog.get_logger(__name__)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Event = TypeVar("Event")


def rerun_on_restart(
    channel: grpc.Channel,
    service: str,
    start: Callable[[], Iterator[Event]],
    job: str,
    reruns: int = settings.JOB_RERUNS,
    window_s: float = settings.RETRY_WINDOW_S,
) -> Iterator[Event]:
    """A job's events, the job started again from the beginning when its service goes away
    before the job ends (every facesets job is idempotent, so this is safe; its progress starts
    over). The service gets `window_s` to come back each time, and the job `reruns` reruns."""
    attempt = 0
    while True:
        try:
            yield from start()
            return
        except grpc.RpcError as error:
            if not is_transient(error):
                raise
            attempt += 1
            if attempt > reruns:
                raise ServiceUnavailableError(
                    f"{service} went away {attempt} times during the {job} job; "
                    "see its log, then run the command again"
                ) from error
            log.warning(
                "service went away during a job; running the job again once it is back",
                service=service,
                job=job,
                code=error.code().name,
            )
            wait_until_serving(channel, service, window_s)


class ResumableStream(Generic[Req, Resp]):
    """A bidirectional stream keyed by request: each request gets one final answer.

    `answers(resp)` names the request keys a response settles; `final(resp)` says whether it
    settles them (a "not done" answer from a shutting-down server does not). At most
    `max_inflight` requests wait for answers, which bounds memory and holds back the source.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        service: str,
        call: Callable[[Iterator[Req]], Iterator[Resp]],
        key: Callable[[Req], Hashable],
        answers: Callable[[Resp], Iterable[Hashable]],
        final: Callable[[Resp], bool] = lambda _: True,
        max_inflight: int = settings.EMBED_INFLIGHT,
        window_s: float = settings.RETRY_WINDOW_S,
        prologue: Callable[[], Iterable[Req]] = tuple,
        closed: threading.Event | None = None,
    ) -> None:
        self.channel = channel
        self.service = service
        self.call = call
        self.key = key
        self.answers = answers
        self.final = final
        self.max_inflight = max_inflight
        self.window_s = window_s
        self.prologue = prologue  # sent first on every attempt (e.g. a header message)
        self.closed = closed or threading.Event()  # set by the client's close(): no resuming
        self.restarts = 0

    def run(self, requests: Iterable[Req]) -> Iterator[Resp]:
        source = iter(requests)
        pending: OrderedDict[Hashable, Req] = OrderedDict()
        lock = threading.Lock()
        slots = threading.Semaphore(self.max_inflight)
        state = {"generation": 0, "exhausted": False}
        source_errors: list[Exception] = []  # what the caller's own iterator raised
        failing_since: float | None = None

        def finished() -> bool:
            """All requests answered: the end, or the caller's error once its answers are out."""
            with lock:
                if not (state["exhausted"] and not pending):
                    return False
            if source_errors:
                raise source_errors[0]
            return True

        def outgoing(generation: int, resend: list[Req]) -> Iterator[Req]:
            yield from self.prologue()
            yield from resend
            while True:
                slots.acquire()
                with lock:
                    if state["generation"] != generation:
                        slots.release()  # a newer attempt owns the source now
                        return
                    try:
                        request = next(source)
                    except StopIteration:
                        state["exhausted"] = True
                        slots.release()
                        return
                    except Exception as error:
                        # Raised again as itself once the requests before it are answered;
                        # gRPC would report it only as "Exception iterating requests!".
                        source_errors.append(error)
                        state["exhausted"] = True
                        slots.release()
                        return
                    pending[self.key(request)] = request
                yield request

        while True:
            if finished():
                return
            with lock:
                state["generation"] += 1
                generation = state["generation"]
                resend = list(pending.values())
            try:
                for response in self.call(outgoing(generation, resend)):
                    failing_since = None
                    if not self.final(response):
                        continue
                    settled = False
                    with lock:
                        for key in self.answers(response):
                            if pending.pop(key, None) is not None:
                                slots.release()
                                settled = True
                    if settled:
                        yield response
            except grpc.RpcError as error:
                if self.closed.is_set() or not is_transient(error):
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.window_s:
                    raise ServiceUnavailableError(
                        f"{self.service or 'service'} unavailable for {self.window_s:.0f}s"
                    ) from error
                self.restarts += 1
                log.warning(
                    "stream interrupted; resuming",
                    service=self.service,
                    unanswered=len(pending),
                    code=error.code().name,
                )
                remaining = max(1.0, self.window_s - (time.monotonic() - failing_since))
                wait_until_serving(self.channel, self.service, remaining)
                continue
            if finished():
                return
            # The server ended the stream with work unanswered (it is shutting down).
            time.sleep(settings.RETRY_BACKOFF_S)
