"""`facesets config show`: the effective settings of facesets.toml and the environment."""

from __future__ import annotations

import argparse
import json

from facesets.orchestrator import settings
from facesets.shared import config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    about = "print every key, its value and where it came from (secrets redacted)"
    show = actions.add_parser("show", help=about, description=about)
    show.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    loaded = settings.CONFIG
    rows = loaded.show()
    if args.json:
        print(
            json.dumps(
                {
                    "file": str(loaded.path) if loaded.path else None,
                    "settings": {k: {"value": v, "source": s} for k, v, s in rows},
                },
                indent=2,
            )
        )
        return 0
    where = loaded.path or f"none (looked for {config.user_config_file()})"
    print(f"config file: {where}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value}  [{source}]")
    return 0


COMMANDS = {
    "config": (
        "the settings from facesets.toml and FACESETS_* variables (`config show`)",
        add_arguments,
        run,
    )
}
