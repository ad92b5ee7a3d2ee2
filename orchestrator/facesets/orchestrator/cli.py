"""The `facesets` command: sequences work across the inference, clustering and export services."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc

from facesets.orchestrator import (
    age_cmd,
    clip_cmd,
    config_cmd,
    doctor,
    embed,
    enrich,
    export_cmd,
    identity_cmd,
    immich_cmd,
    jobs,
    local,
    maintenance_cmd,
    report_cmd,
    run_cmd,
    settings,
    store_cmd,
    video_cmd,
)
from facesets.orchestrator.console import AroundProgressBars
from facesets.orchestrator.review import command as review_command
from facesets.shared import config, logs

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]

# Every command: name -> (help, add_arguments, run), from the modules that define them.
COMMANDS: dict[str, Command] = {
    **embed.COMMANDS,
    **jobs.COMMANDS,
    **enrich.COMMANDS,
    **export_cmd.COMMANDS,
    **report_cmd.COMMANDS,
    **maintenance_cmd.COMMANDS,
    **run_cmd.COMMANDS,
    **immich_cmd.COMMANDS,
    **identity_cmd.COMMANDS,
    **video_cmd.COMMANDS,
    **doctor.COMMANDS,
    **age_cmd.COMMANDS,
    **store_cmd.COMMANDS,
    **clip_cmd.COMMANDS,
    **config_cmd.COMMANDS,
    **review_command.COMMANDS,
}
SERVE_HELP = "run one service (inference, clustering or export) in the foreground"


def serve_command() -> Command:
    """`facesets serve` comes with the services distribution (the `embedded` extra)."""
    try:
        from facesets import serve
    except ImportError as missing:
        problem = str(missing)

        def refuse(args: argparse.Namespace) -> int:
            print(
                f"error: the services are not installed here ({problem}); install them with "
                "`pip install 'facesets[embedded]'`, or pass the addresses of running ones",
                file=sys.stderr,
            )
            return 2

        def any_arguments(parser: argparse.ArgumentParser) -> None:
            parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

        return SERVE_HELP, any_arguments, refuse
    return serve.COMMANDS["serve"]


def _version() -> str:
    try:
        return metadata.version("facesets")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesets",
        description="Turn a photo collection into clean per-identity face sets for face-swap "
        "tools. Without service addresses, each command starts the services it needs locally.",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("FACESETS_LOG_LEVEL", "warning"),
        help="debug, info, warning or error (default warning)",
    )
    parser.add_argument("--log-json", action="store_true", help="log JSON lines")
    parser.add_argument(
        "--config",
        dest="facesets_config",  # `import-folders --config` is its own folders file
        type=Path,
        help="facesets.toml to read (default: $FACESETS_CONFIG, else the user's config folder: "
        f"{config.user_config_file()})",
    )
    parser.add_argument("--version", action="version", version=f"facesets {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in {"serve": serve_command(), **COMMANDS}.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=run)
    return parser


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds the command as Ctrl-C does, so that the services and
    processes it started are stopped on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> dict[int, Any]:
    """Handlers that raise Stopped; the ones they replace, to put back at the end (main() may
    run inside another program, a test).

    The first signal also tells the local services to stop at once, and ends the command
    after SETTINGS.stop_deadline_s if its unwinding has not; later ones are ignored, so that
    the unwinding they would interrupt stops the services and removes part files."""
    signalled: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        if signalled:
            return
        signalled.append(signum)
        local.halt_all()
        threading.Thread(
            target=_exit_late, args=(signum,), name="stop-deadline", daemon=True
        ).start()
        raise Stopped(signum)

    previous: dict[int, Any] = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, stop)
    return previous


def _exit_late(signum: int) -> None:
    time.sleep(settings.SETTINGS.stop_deadline_s)
    print(
        f"stopped by {signal.Signals(signum).name}; the command did not finish stopping in "
        f"{settings.SETTINGS.stop_deadline_s:g}s and exits now; re-run the same command to "
        "carry on",
        file=sys.stderr,
    )
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = "info" if args.command == "serve" and args.log_level == "warning" else args.log_level
    logs.configure(level, json=args.log_json, stream=AroundProgressBars())
    try:
        settings.use_config(config.Config.load(args.facesets_config))
    except config.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    previous: dict[int, Any] = {}
    if args.command != "serve" and threading.current_thread() is threading.main_thread():
        previous = _stop_on_signals()  # `serve` stops on these signals its own way
    try:
        return _run(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args) or 0)
    except Stopped as stopped:
        print(
            f"stopped by {signal.Signals(stopped.signum).name}; re-run the same command to "
            "carry on",
            file=sys.stderr,
        )
        return 128 + stopped.signum
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to carry on", file=sys.stderr)
        return 130
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
