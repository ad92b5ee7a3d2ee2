"""`facesets immich stage|import`: bring an Immich library in."""

from __future__ import annotations

import argparse

from facesets.orchestrator import immich_import
from facesets.orchestrator.immich import cli as immich_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    steps = parser.add_subparsers(dest="immich_step", metavar="STEP", required=True)
    stage = steps.add_parser(
        "stage",
        help="download the photos with big enough faces "
        "(IMMICH_URL, IMMICH_API_KEY from the environment)",
    )
    immich_stage.add_arguments(stage)
    stage.set_defaults(immich_run=immich_stage.run)
    import_help = "embed the staged photos, match known identities, build and export new facesets"
    imported = steps.add_parser("import", help=import_help, description=import_help)
    immich_import.add_arguments(imported)
    imported.set_defaults(immich_run=immich_import.run)


def run(args: argparse.Namespace) -> int:
    return int(args.immich_run(args))


COMMANDS = {"immich": ("bring an Immich library in: `stage` then `import`", add_arguments, run)}
