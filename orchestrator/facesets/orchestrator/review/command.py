"""`facesets review EXPORT`: start the review web app over an export.

It talks to the export service like every other command (started locally when no address is
given); it binds to 127.0.0.1 at a free port unless --listen names another address, which
needs the config's token (and may use its TLS certificate)."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from facesets.contract.export import MergeParams, MergeRequest, ReportRequest, RestoreRequest
from facesets.contract.fields import InvalidParameter
from facesets.contract.requests import JobRequest
from facesets.contract.review import (
    MarkDifferentRequest,
    NameRequest,
    RejectCropsRequest,
    SplitRequest,
)
from facesets.orchestrator import settings as _settings
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.stages import follow
from facesets.shared.tokens import read_token

if TYPE_CHECKING:  # the web stack is imported when the app starts, not with every command
    from facesets.orchestrator.review.app import Actions
    from facesets.orchestrator.review.export_view import ExportView

STORE_BESIDE = "faces.db"  # `facesets run SRC OUT` keeps OUT/faces.db beside OUT/export


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "export_dir", metavar="EXPORT", type=Path, help="export folder (holding manifest.json)"
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="where the app listens (default 127.0.0.1 at a free port); any other address "
        "needs the token (--token-file or the config's token_file)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="the store the export came from: facesets marked as different people are kept "
        "apart by later refine runs over it (default: faces.db beside EXPORT, if there)",
    )
    parser.add_argument("--tls-cert", type=Path, help="TLS certificate (PEM) for --listen")
    parser.add_argument("--tls-key", type=Path, help="TLS private key (PEM) for --listen")
    parser.add_argument(
        "--no-browser", action="store_true", help="print the address, open no browser"
    )
    add_service_arguments(parser, "export")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--listen {listen!r}: give HOST:PORT (PORT 0: a free one)")
    return host.strip("[]"), int(port)


def _request(export: Path, store: Path | None, kind: str, body: Mapping[str, object]) -> JobRequest:
    from facesets.orchestrator.review.app import ActionRefused

    faceset = str(body.get("faceset") or "")
    crops = body.get("crops") or []
    if not isinstance(crops, list):
        raise ValueError("crops: a list of crop file names")
    names = tuple(str(c) for c in crops)
    if kind == "reject":
        return RejectCropsRequest(export, faceset, names)
    if kind == "split":
        return SplitRequest(export, faceset, names, str(body.get("into") or ""))
    if kind == "merge":
        return MergeRequest(export, MergeParams(faceset, str(body.get("into") or "")))
    if kind == "name":
        return NameRequest(export, faceset, str(body.get("name") or ""))
    if kind == "different":
        return MarkDifferentRequest(export, faceset, str(body.get("other") or ""), store)
    if kind == "restore":
        return RestoreRequest(export, run_id=str(body.get("run") or ""))
    raise ActionRefused(f"no action {kind!r}", 404)


def _exported_from_another(export: Path, store: Path) -> str:
    """Why `store` is not the one the export's facesets came from ("" when it may be): its
    marks of different people, as face ids of that store, would keep other faces apart in
    this one. The export's entries record their store's id (an export made before records
    none, and any store is taken)."""
    from facesets.contract import layout
    from facesets.orchestrator.roots import store_id_of

    try:
        manifest = layout.read_json(export / layout.EXPORT_MANIFEST, default={})
    except (OSError, ValueError):
        return ""  # the view refuses an unreadable manifest with its own words
    entries = manifest.get("facesets") if isinstance(manifest, dict) else None
    recorded = {
        str(entry.get("store_id")): str(entry.get("store") or "another face store")
        for entry in (entries.values() if isinstance(entries, dict) else [])
        if isinstance(entry, dict) and entry.get("store_id")
    }
    own = store_id_of(store)
    if not recorded or not own or own in recorded:
        return ""
    return f"{export} was exported from {', '.join(sorted(recorded.values()))}, not {store}"


def make_actions(opened: Services, export: Path, view: ExportView, store: Path | None) -> Actions:
    from facesets.orchestrator.review.app import ActionRefused, rpc_message

    client = opened.export(peers=False)

    def act(kind: str, body: dict[str, object]) -> dict[str, object]:
        if kind == "undo":
            last = view.last_undoable()
            if last is None:
                raise ActionRefused("nothing to undo")
            kind, body = "restore", {"run": last.id}
        try:
            request = _request(export, store, kind, body)
        except (ValueError, InvalidParameter) as error:
            raise ActionRefused(str(error)) from error
        try:
            return follow(client.run(request), show_progress=False)  # type: ignore[arg-type]
        except grpc.RpcError as error:
            raise rpc_message(error) from error

    return act


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from facesets.orchestrator.review.app import AppConfig, build_app
    from facesets.orchestrator.review.export_view import ExportView
    from facesets.orchestrator.review.warm import WarmStart

    export = args.export_dir.expanduser().resolve()
    if not export.is_dir():
        raise ValueError(f"no export folder at {export}")
    host, port = split_listen(args.listen)
    config = _settings.CONFIG
    token_file = config.get("token_file", args.token_file)
    tls_cert = config.get("tls_cert", args.tls_cert)
    tls_key = config.get("tls_key", args.tls_key)
    access = read_token(Path(token_file)) if token_file and not is_loopback(host) else None
    if not is_loopback(host) and access is None:
        raise ValueError(
            f"refusing to serve the review app on {host} without a token: pass --token-file "
            "FILE (or set token_file in the config), or listen on 127.0.0.1"
        )
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    store = args.store.expanduser().resolve() if args.store else None
    if store is None and (export.parent / STORE_BESIDE).is_file():
        store = export.parent / STORE_BESIDE
    if store is not None and (other := _exported_from_another(export, store)):
        if args.store:
            raise ValueError(f"{other}; give --store the face store it was exported from")
        print(f"{other}: people marked different are kept in the export only", file=sys.stderr)
        store = None
    view = ExportView(export)
    view.snapshot()  # an export without a manifest is refused before anything starts
    with services(args, [export, store]) as opened:
        # The report's thumbnail cache, brought up to date: the app serves from it.
        follow(opened.export(peers=False).run(ReportRequest(export)), show_progress=True)
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on connections of a socket that
        # says so, and without it every response (headers, then body) waited ~40 ms for the
        # browser's delayed ACK (Nagle), the whole of a thumbnail's time.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # a browser opening the printed address waits in the backlog
        bound = sock.getsockname()[1]
        allowed = {f"127.0.0.1:{bound}", f"localhost:{bound}"} if is_loopback(host) else set()
        if host not in ("127.0.0.1", "localhost", "0.0.0.0", "::"):
            allowed |= {f"{host}:{bound}"} if allowed else set()
        app = build_app(AppConfig(view, make_actions(opened, export, view, store), allowed, access))
        view.snapshot()  # the first screen is served warm: manifests read, pages compiled
        scheme = "https" if tls_cert else "http"
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        address = f"{scheme}://{shown}:{bound}/" + (f"?token={access}" if access else "")

        def ready() -> None:  # once the app has answered its first request itself
            print(f"review: {address}", flush=True)
            print("stop with Ctrl+C", file=sys.stderr, flush=True)
            if not args.no_browser:
                webbrowser.open(address)

        headers = [(b"host", f"{shown}:{bound}".encode())]
        if access:
            headers.append((b"authorization", f"Bearer {access}".encode()))
        server = uvicorn.Server(
            uvicorn.Config(
                WarmStart(app, headers, ready),
                log_level="warning",
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None,
            )
        )
        server.run(sockets=[sock])
    return 0


COMMANDS = {
    "review": (
        "review an export in the browser: look at every faceset, reject crops, split, merge, "
        "name, mark look-alikes as different people, undo (each action a maintenance run)",
        add_arguments,
        run,
    )
}
