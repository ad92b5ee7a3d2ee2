"""The `facesets` command: sequences work across the inference, clustering and export services."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import grpc

from facesets.common import logs

# command -> (module, one-line help). Modules expose add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "run one service (inference, clustering or export) in the foreground"),
    "embed": ("embed", "detect and embed every face of a photo folder into a face store"),
}


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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        loaded = importlib.import_module(f"facesets.orchestrator.{module}")
        loaded.add_arguments(sub)
        sub.set_defaults(handler=loaded.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = "info" if args.command == "serve" and args.log_level == "warning" else args.log_level
    logs.configure(level, json=args.log_json)
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
