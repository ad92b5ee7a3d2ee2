"""`facesets immich stage`: flags, environment and exit codes around the staging job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from facesets.client import ServiceUnavailableError
from facesets.orchestrator.connect import add_service_arguments, services
from facesets.orchestrator.immich.config import (
    EXIT_ASSET_ERRORS,
    EXIT_AUTH,
    EXIT_BUSY,
    EXIT_NO_SPACE,
    EXIT_OK,
    EXIT_OUTAGE,
    StageConfig,
    StageSetupError,
)
from facesets.orchestrator.immich.stage import stage, store_known_content
from facesets.orchestrator.local import ServiceStartError
from facesets.orchestrator.settings import SETTINGS
from facesets.shared.folder_lock import FolderBusyError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Stage the photos of an Immich library that show a face big enough for a face set. "
        "Reads IMMICH_URL and IMMICH_API_KEY from the environment."
    )
    parser.epilog = (
        f"exit codes: {EXIT_OK} done; {EXIT_ASSET_ERRORS} some assets failed (a re-run retries "
        f"them); {EXIT_OUTAGE} Immich went away (state saved: the same command resumes); "
        f"{EXIT_AUTH} wrong API key, missing permission or bad configuration; {EXIT_BUSY} "
        f"another run is staging into the same folder; {EXIT_NO_SPACE} the staging folder's "
        "disk is full (what was staged is kept: the same command goes on once there is space)"
    )
    parser.add_argument("--user", required=True, help="label of this library (a folder name)")
    parser.add_argument(
        "--staging-root",
        type=Path,
        default=Path(SETTINGS.immich.staging_root),
        help="photos go to STAGING_ROOT/USER/ (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=SETTINGS.immich.workers,
        help="downloads at once (default: %(default)s)",
    )
    parser.add_argument(
        "--min-face-short",
        type=float,
        default=SETTINGS.immich.min_face_short,
        help="keep photos with a face whose short edge reaches this, in original pixels",
    )
    parser.add_argument(
        "--exclude",
        metavar="GLOB",
        nargs="+",
        action="extend",
        default=[],
        help="skip assets whose path matches (case-insensitive; * crosses folders)",
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="face store: skip photos it already holds"
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=SETTINGS.immich.page_size,
        help="assets asked for per search request (default: %(default)s)",
    )
    parser.add_argument(
        "--refresh-faces",
        action="store_true",
        help="read the faces of staged photos again (after people were merged or faces "
        "reassigned in Immich; names are read on every run)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_service_arguments(parser, "clustering")  # used with --store only


def run(args: argparse.Namespace) -> int:
    url = os.environ.get("IMMICH_URL", "").strip()
    api_key = os.environ.get("IMMICH_API_KEY", "").strip()
    pairs = (("IMMICH_URL", url), ("IMMICH_API_KEY", api_key))
    missing = [name for name, value in pairs if not value]
    if missing:
        print(f"error: set {' and '.join(missing)} in the environment", file=sys.stderr)
        return EXIT_AUTH
    config = StageConfig(
        url=url,
        api_key=api_key,
        user=args.user,
        staging_root=args.staging_root,
        workers=args.workers,
        min_face_short=args.min_face_short,
        excludes=tuple(args.exclude),
        page_size=args.page_size,
        progress=not args.no_progress,
        refresh_faces=args.refresh_faces,
    )
    try:
        with services(args, [args.store]) as opened:
            known = store_known_content(opened, args.store) if args.store is not None else None
            summary = stage(config, known)
    except FolderBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (ValueError, StageSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except (ServiceUnavailableError, ServiceStartError) as exc:
        print(f"error: the face store cannot be queried: {exc}", file=sys.stderr)
        return EXIT_AUTH
    print(summary.report())
    return summary.exit_code
