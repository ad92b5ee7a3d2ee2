"""Streams that survive a service restart: what was sent and not answered is sent again."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

import grpc

from facesets.client import defaults
from facesets.client.channel import ServiceUnavailableError, is_transient, wait_until_serving

log = logging.getLogger(__name__)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Event = TypeVar("Event")


def rerun_on_restart(
    channel: grpc.Channel,
    service: str,
    start: Callable[[], Iterator[Event]],
    job: str,
    reruns: int = defaults.JOB_RERUNS,
    window_s: float = defaults.RETRY_WINDOW_S,
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
                "service went away during a job; running the job again once it is back "
                "(service=%s job=%s code=%s)",
                service,
                job,
                error.code().name,
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
        max_inflight: int = defaults.EMBED_INFLIGHT,
        window_s: float = defaults.RETRY_WINDOW_S,
        prologue: Callable[[], Iterable[Req]] = tuple,
        closed: threading.Event | None = None,
        per_call: int | None = None,
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
        # New requests one call carries before it ends and the next call starts (so that a
        # balancing channel picks a replica again); None: one call for everything.
        self.per_call = per_call
        self.restarts = 0

    def run(self, requests: Iterable[Req]) -> Iterator[Resp]:
        """Each request's final answer, in the order they come; resumes across restarts."""
        run = _StreamRun(self, iter(requests))
        while not run.finished():
            try:
                yield from run.attempt()
            except grpc.RpcError as error:
                run.recover(error)
                continue
            if run.finished():
                return
            if run.call_full and not run.pending:
                continue  # the call carried its share; the next one is balanced afresh
            # The server ended the stream with work unanswered (it is shutting down).
            time.sleep(defaults.RETRY_BACKOFF_S)


class _StreamRun(Generic[Req, Resp]):
    """One `ResumableStream.run`: the caller's source, the requests sent and not yet answered,
    and the attempts that carry them.

    Each attempt (one call) has a generation number; only the newest attempt takes requests from
    the source, so an attempt that broke cannot steal them from the one that resumed.
    """

    def __init__(self, stream: ResumableStream[Req, Resp], source: Iterator[Req]) -> None:
        self.stream = stream
        self.source = source
        self.pending: OrderedDict[Hashable, Req] = OrderedDict()
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(stream.max_inflight)
        self.generation = 0
        self.exhausted = False
        self.source_errors: list[Exception] = []  # what the caller's own iterator raised
        self.failing_since: float | None = None
        self.call_full = False  # the latest call took its `per_call` share of new requests

    def finished(self) -> bool:
        """All requests answered: the end, or the caller's error once its answers are out."""
        with self.lock:
            if not (self.exhausted and not self.pending):
                return False
        if self.source_errors:
            raise self.source_errors[0]
        return True

    def attempt(self) -> Iterator[Resp]:
        """One call: unanswered requests first, then new ones; yields settling answers."""
        with self.lock:
            self.generation += 1
            generation = self.generation
            resend = list(self.pending.values())
        for response in self.stream.call(self._outgoing(generation, resend)):
            self.failing_since = None
            if self.stream.final(response) and self._settle(response):
                yield response

    def _settle(self, response: Resp) -> bool:
        settled = False
        with self.lock:
            for key in self.stream.answers(response):
                if self.pending.pop(key, None) is not None:
                    self.slots.release()
                    settled = True
        return settled

    def _outgoing(self, generation: int, resend: list[Req]) -> Iterator[Req]:
        yield from self.stream.prologue()
        yield from resend
        taken = 0
        self.call_full = False
        while True:
            if self.stream.per_call is not None and taken >= self.stream.per_call:
                self.call_full = True
                return
            self.slots.acquire()
            with self.lock:
                if self.generation != generation:
                    self.slots.release()  # a newer attempt owns the source now
                    return
                try:
                    request = next(self.source)
                except StopIteration:
                    self.exhausted = True
                    self.slots.release()
                    return
                except Exception as error:
                    # Raised again as itself once the requests before it are answered;
                    # gRPC would report it only as "Exception iterating requests!".
                    self.source_errors.append(error)
                    self.exhausted = True
                    self.slots.release()
                    return
                self.pending[self.stream.key(request)] = request
            taken += 1
            yield request

    def recover(self, error: grpc.RpcError) -> None:
        """Wait for the service to come back after a transient error, or raise."""
        stream = self.stream
        if stream.closed.is_set() or not is_transient(error):
            raise error
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > stream.window_s:
            raise ServiceUnavailableError(
                f"{stream.service or 'service'} unavailable for {stream.window_s:.0f}s"
            ) from error
        stream.restarts += 1
        log.warning(
            "stream interrupted; resuming (service=%s unanswered=%d code=%s)",
            stream.service,
            len(self.pending),
            error.code().name,
        )
        remaining = max(1.0, stream.window_s - (time.monotonic() - self.failing_since))
        wait_until_serving(stream.channel, stream.service, remaining)


class _SharedSource(Generic[Req]):
    """One iterator drawn from by several streams' threads."""

    def __init__(self, source: Iterator[Req]) -> None:
        self._source = source
        self._lock = threading.Lock()

    def __iter__(self) -> _SharedSource[Req]:
        return self

    def __next__(self) -> Req:
        with self._lock:
            return next(self._source)


_END = object()


def run_parallel(
    streams: Sequence[ResumableStream[Req, Resp]], requests: Iterable[Req]
) -> Iterator[Resp]:
    """Several resumable streams drawing from one source, their answers merged as they come.

    Over a balancing channel each stream's calls go to the replica the balancer picks; the
    requests a broken call leaves unanswered are sent again on that stream's next call, which
    the balancer gives to a replica that serves. The first error ends the whole run.
    """
    if len(streams) == 1:
        yield from streams[0].run(requests)
        return
    source = _SharedSource(iter(requests))
    answers: queue.Queue = queue.Queue(maxsize=256)
    errors: list[BaseException] = []
    stop = threading.Event()

    def drive(stream: ResumableStream[Req, Resp]) -> None:
        try:
            for answer in stream.run(source):
                while not stop.is_set():
                    try:
                        answers.put(answer, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:  # raised in the caller's thread
            errors.append(error)
            stop.set()
        finally:
            answers.put(_END)

    threads = [
        threading.Thread(target=drive, args=(stream,), name=f"stream-{i}", daemon=True)
        for i, stream in enumerate(streams)
    ]
    for thread in threads:
        thread.start()
    ended = 0
    try:
        while ended < len(threads):
            answer = answers.get()
            if errors:
                raise errors[0]
            if answer is _END:
                ended += 1
            else:
                yield answer
    finally:
        stop.set()  # threads still driving a stream stop at their next answer
