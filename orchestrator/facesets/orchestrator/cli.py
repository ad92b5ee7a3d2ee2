"""The `facesets` command: sequences work across the inference, clustering and export services."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata

import grpc

from facesets.common import logs
from facesets.orchestrator.console import AroundProgressBars

# Modules that define commands: each has COMMANDS = {name: (help, add_arguments, run)}.
COMMAND_MODULES = (
    "serve",
    "embed",
    "jobs",
    "enrich",
    "export_cmd",
    "report_cmd",
    "maintenance_cmd",
    "run_cmd",
    "immich_cmd",
    "identity_cmd",
    "video_cmd",
    "doctor",
    "age_cmd",
    "store_cmd",
    "clip_cmd",
)


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
    parser.add_argument("--version", action="version", version=f"facesets {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        loaded = importlib.import_module(f"facesets.orchestrator.{module}")
        for name, (help_text, add_arguments, run) in loaded.COMMANDS.items():
            sub = commands.add_parser(name, help=help_text, description=help_text)
            add_arguments(sub)
            sub.set_defaults(handler=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = "info" if args.command == "serve" and args.log_level == "warning" else args.log_level
    logs.configure(level, json=args.log_json, stream=AroundProgressBars())
    try:
        return int(args.handler(args) or 0)
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
