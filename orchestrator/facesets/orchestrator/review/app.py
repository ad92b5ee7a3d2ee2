"""The review web app (Starlette): pages rendered from the export's manifests, actions sent to
the export service (each a maintenance run), and the guards of a local web app: a per-process
CSRF token with a same-origin check on every POST, a Host check against DNS rebinding, and the
config's bearer token when it listens beyond loopback."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facesets.orchestrator.review.export_view import PARTITION_TITLES, ExportView, Faceset

HERE = Path(__file__).parent
PAGE_SIZE = 24  # overview rows per page: the first screen stays small at any library size
ROW_THUMBS = 4
COOKIE = "facesets_review"
BUSY_HINT = "is being written by another facesets job"
# An action: (what the browser sent) -> the service's summary; raises ActionRefused.
Actions = Callable[[str, dict[str, object]], dict[str, object]]


class ActionRefused(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class AppConfig:
    view: ExportView
    actions: Actions
    allowed_hosts: set[str]  # Host headers served ("127.0.0.1:PORT", ...); empty: any
    access_token: str | None = None  # required beyond loopback
    csrf_token: str = ""


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,
    )
    return env


def _same_origin(request: Request) -> bool:
    """A POST from one of the app's own pages: its Origin (or Referer) names this host, and
    the browser does not call it cross-site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return False
    if source == "null":
        return False
    return urlsplit(source).netloc == request.headers.get("host")


SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
    (b"referrer-policy", b"same-origin"),
]


class Guard:
    """Pure ASGI middleware (no extra task per request): Host check, the access token beyond
    loopback, CSRF token and same-origin check on every POST, security headers."""

    def __init__(self, app: ASGIApp, config: AppConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._refusal(Request(scope))
        if refused is not None:
            await refused(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, request: Request) -> Response | None:
        config = self.config
        host = request.headers.get("host", "")
        if config.allowed_hosts and host not in config.allowed_hosts:
            return Response("unknown host", status_code=421)
        if config.access_token:
            given = request.query_params.get("token")
            if given is not None and hmac.compare_digest(given, config.access_token):
                moved = RedirectResponse(request.url.path, status_code=303)
                moved.set_cookie(COOKIE, config.access_token, httponly=True, samesite="strict")
                return moved
            header = request.headers.get("authorization", "")
            cookie = request.cookies.get(COOKIE, "")
            ok = hmac.compare_digest(cookie, config.access_token) or hmac.compare_digest(
                header, f"Bearer {config.access_token}"
            )
            if not ok:
                return Response(
                    "this review app needs its token: open the address it printed "
                    "(…/?token=…) or send Authorization: Bearer TOKEN",
                    status_code=401,
                )
        if request.method not in ("GET", "HEAD"):
            token = request.headers.get("x-csrf-token", "")
            if not _same_origin(request) or not hmac.compare_digest(token, config.csrf_token):
                return JSONResponse(
                    {"ok": False, "message": "refused: a cross-site or tokenless request"},
                    status_code=403,
                )
        return None


def _filtered(
    facesets: list[Faceset], query: str, flag: str, partition: str, sort: str
) -> list[Faceset]:
    needle = query.strip().lower()
    chosen = [
        f
        for f in facesets
        if (not needle or needle in f.name.lower() or needle in f.label.lower())
        and (not flag or flag in f.flags)
        and (not partition or f.partition == partition)
    ]
    keys: dict[str, Callable[[Faceset], Any]] = {
        "name": lambda f: (f.partition != "facesets", f.name),
        "size": lambda f: (-f.kept, f.name),
        "small": lambda f: (f.kept, f.name),
        "quality": lambda f: (-f.mean_quality, f.name),
    }
    return sorted(chosen, key=keys.get(sort, keys["name"]))


def build_app(config: AppConfig) -> Starlette:
    if not config.csrf_token:
        config.csrf_token = secrets.token_urlsafe(32)
    env = _templates()
    for name in env.list_templates():  # compiled once, before the first request
        env.get_template(name)
    view = config.view

    def render(name: str, **values: Any) -> HTMLResponse:
        snap = view.snapshot()
        undo = view.last_undoable()
        page = env.get_template(name).render(
            csrf=config.csrf_token,
            export=str(view.out),
            undo=undo,
            runs=len(snap.runs),
            **values,
        )
        return HTMLResponse(page)

    async def overview(request: Request) -> Response:
        snap = await run_in_threadpool(view.snapshot)
        params = request.query_params
        query, flag = params.get("q", ""), params.get("flag", "")
        partition, sort = params.get("partition", ""), params.get("sort", "name")
        try:
            number = max(1, int(params.get("page", "1")))
        except ValueError:
            number = 1
        rows = _filtered(snap.facesets, query, flag, partition, sort)
        pages = max(1, -(-len(rows) // PAGE_SIZE))
        number = min(number, pages)
        shown = rows[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
        flags = sorted({f for s in snap.facesets for f in s.flags})
        partitions = sorted({s.partition for s in snap.facesets})
        return render(
            "overview.html",
            rows=shown,
            total=len(rows),
            all=len(snap.facesets),
            crops=sum(s.kept for s in snap.facesets),
            page=number,
            pages=pages,
            q=query,
            flag=flag,
            partition=partition,
            sort=sort,
            flags=flags,
            partitions=partitions,
            titles=PARTITION_TITLES,
            row_thumbs=ROW_THUMBS,
            lookalikes=len(snap.lookalikes),
        )

    async def faceset_page(request: Request) -> Response:
        name = request.path_params["name"]
        snap = await run_in_threadpool(view.snapshot)
        faceset = snap.by_name.get(name)
        if faceset is None:
            return HTMLResponse(f"no faceset {name!r} in this export", status_code=404)
        crops = await run_in_threadpool(view.crops, faceset)
        dropped = await run_in_threadpool(view.dropped, faceset)
        others = [f for f in snap.facesets if f.partition == "facesets" and f.name != name]
        return render(
            "faceset.html",
            faceset=faceset,
            crops=crops,
            dropped=dropped,
            others=others,
            editable=faceset.partition == "facesets",
        )

    async def lookalikes(request: Request) -> Response:
        snap = await run_in_threadpool(view.snapshot)
        return render("lookalikes.html", pairs=snap.lookalikes, by_name=snap.by_name)

    async def dropped(request: Request) -> Response:
        snap = await run_in_threadpool(view.snapshot)

        def collect() -> dict[str, list[Any]]:
            reasons: dict[str, list[Any]] = {}
            for faceset in snap.facesets:
                for item in view.dropped(faceset):
                    reasons.setdefault(item.reason, []).append(item)
            return dict(sorted(reasons.items()))

        return render("dropped.html", reasons=await run_in_threadpool(collect))

    async def history(request: Request) -> Response:
        return render("history.html", items=await run_in_threadpool(view.history))

    async def image(request: Request) -> Response:
        rel = request.path_params["rel"]
        found = view.image(rel)  # a small file: read inline, no thread hop
        if found is None:
            return Response("not a crop of this export", status_code=404)
        data, kind = found
        return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=60"})

    async def action(request: Request) -> Response:
        kind = request.path_params["action"]
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"ok": False, "message": "a JSON body is needed"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"ok": False, "message": "a JSON object is needed"}, 400)
        try:
            summary = await run_in_threadpool(config.actions, kind, body)
        except ActionRefused as refused:
            return JSONResponse({"ok": False, "message": str(refused)}, refused.status)
        return JSONResponse({"ok": True, "summary": summary, "message": _said(kind, summary)})

    routes = [
        Route("/", overview),
        Route("/faceset/{name}", faceset_page),
        Route("/lookalikes", lookalikes),
        Route("/dropped", dropped),
        Route("/history", history),
        Route("/img/{rel:path}", image),
        Route("/api/{action}", action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, config=config)])


def _said(kind: str, summary: Mapping[str, object]) -> str:
    run = summary.get("run")
    note = summary.get("note")
    if note:
        return str(note)
    if kind == "undo":
        runs = summary.get("runs")
        listed = ", ".join(str(r) for r in runs) if isinstance(runs, list) else ""
        return f"put back run {listed or '(none)'}"
    return f"{kind}: done (run {run})" if run else f"{kind}: done"


def rpc_message(error: grpc.RpcError) -> ActionRefused:
    """The service's refusal as the browser shows it; a busy export is 409 (try again)."""
    details = error.details() if hasattr(error, "details") else str(error)
    text = str(details or error)
    if BUSY_HINT in text:
        return ActionRefused(
            "another action on this export is running (another tab or command): nothing was "
            "changed; try again when it has finished",
            409,
        )
    return ActionRefused(text, 400)
