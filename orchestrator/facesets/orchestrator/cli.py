"""The `facesets` command: sequences work across the inference, clustering and export services."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc

from facesets.orchestrator import local, settings
from facesets.orchestrator.console import AroundProgressBars
from facesets.shared import config, logs

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]
Commands = Mapping[str, Command]


# The modules that define the commands, each imported only when one of its commands runs (or
# when every command is listed): a command does not load the others' dependencies (Immich's
# HTTP client, the review app's web stack, the services) at every start.
def _embed() -> Commands:
    from facesets.orchestrator import embed

    return embed.COMMANDS


def _jobs() -> Commands:
    from facesets.orchestrator import jobs

    return jobs.COMMANDS


def _enrich() -> Commands:
    from facesets.orchestrator import enrich

    return enrich.COMMANDS


def _export() -> Commands:
    from facesets.orchestrator import export_cmd

    return export_cmd.COMMANDS


def _report() -> Commands:
    from facesets.orchestrator import report_cmd

    return report_cmd.COMMANDS


def _maintenance() -> Commands:
    from facesets.orchestrator import maintenance_cmd

    return maintenance_cmd.COMMANDS


def _run_command() -> Commands:
    from facesets.orchestrator import run_cmd

    return run_cmd.COMMANDS


def _immich() -> Commands:
    from facesets.orchestrator import immich_cmd

    return immich_cmd.COMMANDS


def _identity() -> Commands:
    from facesets.orchestrator import identity_cmd

    return identity_cmd.COMMANDS


def _video() -> Commands:
    from facesets.orchestrator import video_cmd

    return video_cmd.COMMANDS


def _doctor() -> Commands:
    from facesets.orchestrator import doctor

    return doctor.COMMANDS


def _age() -> Commands:
    from facesets.orchestrator import age_cmd

    return age_cmd.COMMANDS


def _store() -> Commands:
    from facesets.orchestrator import store_cmd

    return store_cmd.COMMANDS


def _clip() -> Commands:
    from facesets.orchestrator import clip_cmd

    return clip_cmd.COMMANDS


def _config() -> Commands:
    from facesets.orchestrator import config_cmd

    return config_cmd.COMMANDS


def _review() -> Commands:
    from facesets.orchestrator.review import command

    return command.COMMANDS


# Every command's name -> the module that defines it, in the order `--help` lists them.
COMMAND_MODULES: dict[str, Callable[[], Commands]] = {
    "embed": _embed,
    **dict.fromkeys(("cluster", "refine", "extend", "dedup", "consolidate"), _jobs),
    "enrich": _enrich,
    "export-swap": _export,
    "report": _report,
    **dict.fromkeys(("occlusion", "dedup-optimize", "merge", "restore"), _maintenance),
    "run": _run_command,
    "immich": _immich,
    **dict.fromkeys(("import-folders", "discover"), _identity),
    "video": _video,
    "doctor": _doctor,
    "age": _age,
    "store": _store,
    "clip": _clip,
    "config": _config,
    "review": _review,
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


def command(name: str) -> Command:
    """(help, add_arguments, run) of one command, its module imported now."""
    return serve_command() if name == "serve" else COMMAND_MODULES[name]()[name]


def _global_options(parser: argparse.ArgumentParser) -> None:
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


def chosen_command(argv: list[str] | None) -> str | None:
    """The command named on the command line (after the global options), if it is one."""
    peek = argparse.ArgumentParser(add_help=False)
    _global_options(peek)
    peek.add_argument("command", nargs="?")
    known, _ = peek.parse_known_args(argv)
    return known.command if known.command in ("serve", *COMMAND_MODULES) else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, that command's arguments alone are defined (the
    others are named, their modules not imported)."""
    parser = argparse.ArgumentParser(
        prog="facesets",
        description="Turn a photo collection into clean per-identity face sets for face-swap "
        "tools. Without service addresses, each command starts the services it needs locally.",
    )
    _global_options(parser)
    parser.add_argument("--version", action="version", version=f"facesets {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in ("serve", *COMMAND_MODULES):
        if only not in (None, name):
            commands.add_parser(name)  # not this run's command: nothing of it is loaded
            continue
        help_text, add_arguments, run = command(name)
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
    args = build_parser(chosen_command(argv)).parse_args(argv)
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
