"""The review app answers its first request warm: at uvicorn's lifespan startup (in the
server's own event loop, its HTTP modules loaded, before the bound socket is served) the app
renders the overview once in-process, and only then is the address printed. A browser's first
request used to pay for what only the first request does (the middleware stack built, the
thread pool started, the templates' first render)."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)


class WarmStart:
    """ASGI wrapper: `ready` runs once the app has answered GET / with `headers` (the Host it
    serves, and its token beyond loopback)."""

    def __init__(
        self, app: ASGIApp, headers: list[tuple[bytes, bytes]], ready: Callable[[], None]
    ) -> None:
        self.app = app
        self.headers = headers
        self.ready = ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._warm()
                except Exception as error:  # a warm-up is never a reason not to serve
                    log.warning("review.warm_up_failed", error=str(error))
                self.ready()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _warm(self) -> None:
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 0),
            "server": None,
        }

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                log.warning("review.warm_up_status", status=message["status"])

        await self.app(scope, receive, send)
