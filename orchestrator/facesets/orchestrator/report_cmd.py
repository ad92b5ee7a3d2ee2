"""`facesets report EXPORT`: rebuild an export's review report alone, through the export service."""

from __future__ import annotations

import argparse
from pathlib import Path

from facesets.orchestrator import stages
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.jobs import print_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Its own dest: `--export` is the export service's address.
    parser.add_argument(
        "export_dir", metavar="EXPORT", type=Path, help="export folder (holding manifest.json)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "export")


def run(args: argparse.Namespace) -> int:
    export = args.export_dir.expanduser().resolve()
    if not export.is_dir():
        raise ValueError(f"no export folder at {export}")
    with services(args, [export]) as opened:
        summary = stages.report(opened, export)
    print_summary(summary.as_dict(), args.json)
    return 0


COMMANDS = {
    "report": (
        "rebuild the review report of an export (EXPORT/report/index.html) from its manifests: "
        "an overview with find and filter, a page per faceset, cached thumbnails",
        add_arguments,
        run,
    )
}
