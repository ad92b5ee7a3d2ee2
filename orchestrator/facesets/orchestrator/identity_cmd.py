"""`facesets import-folders` and `facesets discover`: identities asserted by hand-sorted folders,
and new identities found in a mixed folder, both exported into an existing export folder.

Both embed the photos the store does not hold yet (as `facesets embed` does), run their
clustering-service job (which plans the facesets), then export the plan through the export
service, whose entries are merged into EXPORT/manifest.json beside the ones already there.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from facesets.contract import layout
from facesets.contract.clustering import (
    DiscoverParams,
    DiscoverRequest,
    ImportFoldersParams,
    ImportFoldersRequest,
    nested_trusted,
)
from facesets.contract.export import ExportSwapParams, ExportSwapRequest
from facesets.contract.fields import InvalidParameter
from facesets.orchestrator import hints, stages
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.embed import embed
from facesets.orchestrator.flags import add_params_flags, params_from_args
from facesets.orchestrator.jobs import print_summary


class ConfigError(ValueError):
    """A folders.toml that cannot be used as written."""


# --- folders.toml ------------------------------------------------------------------------------
THRESHOLD_KEYS = {
    "first_pass": "first_pass_threshold",
    "second_pass": "second_pass_threshold",
    "match": "match_threshold",
}


@dataclass(frozen=True)
class FoldersConfig:
    """A folders.toml: trusted folders (label -> folder), mixed folders and parameters."""

    trusted: list[tuple[str, Path]]
    mixed: list[Path] = field(default_factory=list)
    params: ImportFoldersParams = field(default_factory=ImportFoldersParams)
    export: ExportSwapParams = field(default_factory=ExportSwapParams)


def _unknown(section: str, given: Mapping[str, object], known: set[str]) -> None:
    extra = sorted(set(given) - known)
    if extra:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(extra)}; known: {sorted(known)}")


def read_config(path: Path) -> FoldersConfig:
    """Parse folders.toml; relative folders are taken from the file's own folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"no config at {path}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    base = path.resolve().parent
    _unknown(str(path), raw, {"trusted", "mixed", "first_number", "top_n", "thresholds"})

    def folder(value: object, where: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: {where} needs a folder (text)")
        resolved = (base / Path(value).expanduser()).resolve()
        if not resolved.is_dir():
            raise ConfigError(f"{path}: {where}: {resolved} is not a folder")
        return resolved

    trusted: list[tuple[str, Path]] = []
    for index, item in enumerate(raw.get("trusted", []), start=1):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: [[trusted]] entries are tables with label and folder")
        _unknown(f"{path} [[trusted]] #{index}", item, {"label", "folder"})
        label = item.get("label")
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{path}: [[trusted]] #{index} needs a label")
        trusted.append((label, folder(item.get("folder"), f"trusted {label!r}")))
    if not trusted:
        raise ConfigError(f"{path}: name at least one [[trusted]] folder with its label")
    nested = nested_trusted(trusted)  # said before anything is embedded
    if nested is not None:
        raise ConfigError(f"{path}: {nested}")
    mixed_raw = raw.get("mixed", [])
    if not isinstance(mixed_raw, list):
        raise ConfigError(f"{path}: mixed is a list of folders")
    mixed = [folder(m, "mixed") for m in mixed_raw]
    thresholds = raw.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ConfigError(f"{path}: [thresholds] is a table")
    _unknown(f"{path} [thresholds]", thresholds, set(THRESHOLD_KEYS))
    try:
        params = ImportFoldersParams(
            first_number=raw.get("first_number", 0),
            **{THRESHOLD_KEYS[k]: v for k, v in thresholds.items()},
        )
        export = ExportSwapParams(top_n=raw.get("top_n", ExportSwapParams().top_n))
    except InvalidParameter as error:
        raise ConfigError(f"{path}: {error}") from error
    return FoldersConfig(trusted, mixed, params, export)


# --- shared steps ------------------------------------------------------------------------------
def embed_folders(opened: Services, folders: list[Path], store: Path) -> dict[str, dict[str, int]]:
    """Embed what the store does not hold yet of each folder; counts per folder."""
    done: dict[str, dict[str, int]] = {}
    for folder in folders:
        print(f"embed {folder}", file=sys.stderr, flush=True)
        summary = embed(opened, folder, store, show_progress=False)
        done[str(folder)] = {"embedded": summary.embedded, "known": summary.known}
    return done


def export_plan(
    opened: Services, store: Path, plan: Path, out: Path, params: ExportSwapParams
) -> dict[str, object]:
    print(f"export into {out}", file=sys.stderr, flush=True)
    return stages.export_swap(opened, ExportSwapRequest(store, plan, out, params=params)).as_dict()


def _check_store(store: Path, dry_run: bool) -> None:
    if dry_run and not store.is_file():
        raise ConfigError(hints.no_store(store, dry_run=True))


# --- import-folders ----------------------------------------------------------------------------
IMPORT_HELP = "hand-sorted folders as identities (folders.toml), exported into EXPORT"
IMPORT_FROM_CONFIG = (
    "first_pass_threshold",
    "second_pass_threshold",
    "match_threshold",
    "first_number",
)


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store (photos not in it are embedded)")
    parser.add_argument(
        "export_dir",
        metavar="EXPORT",
        type=Path,
        help="export folder; its manifest.json is merged",
    )
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        help="folders.toml: [[trusted]] label/folder tables, mixed = [folders], first_number, "
        "top_n, [thresholds] first_pass/second_pass/match (see the README)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan from what the store holds; embed, write and export nothing",
    )
    # Thresholds and numbering come from folders.toml; the constraint from a flag.
    add_params_flags(parser, ImportFoldersParams, skip=(*IMPORT_FROM_CONFIG, "dry_run"))
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "inference", "clustering", "export")


def import_folders_job(args: argparse.Namespace) -> tuple[ImportFoldersRequest, FoldersConfig]:
    config = read_config(args.config)
    given = {name: getattr(config.params, name) for name in IMPORT_FROM_CONFIG}
    params = params_from_args(ImportFoldersParams, args, dry_run=args.dry_run, **given)
    job = ImportFoldersRequest(
        args.store.resolve(), args.export_dir.resolve(), config.trusted, config.mixed, params
    )
    return job, config


def run_import(args: argparse.Namespace) -> int:
    job, config = import_folders_job(args)  # the config is checked before any service starts
    _check_store(job.store, job.params.dry_run)
    with services(args, job.roots()) as opened:
        embedded = (
            {}
            if job.params.dry_run
            else embed_folders(opened, [f for _, f in job.trusted] + list(job.mixed), job.store)
        )
        planned = stages.clustering_job(opened, job).as_dict()
        exported: dict[str, object] = {}
        if not job.params.dry_run and planned.get("numbers"):
            plan = job.export / layout.IMPORT_FOLDERS_DIR / layout.REFINE_MANIFEST
            exported = export_plan(opened, job.store, plan, job.export, config.export)
    print_summary({"embed": embedded, **planned, "export": exported}, args.json)
    return 0


# --- discover ----------------------------------------------------------------------------------
DISCOVER_HELP = "new identities among the photos under ROOT, apart from those EXPORT knows"


def add_discover_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="face store (photos not in it are embedded)")
    parser.add_argument("root", type=Path, help="folder whose photos are searched")
    parser.add_argument(
        "export_dir",
        metavar="EXPORT",
        type=Path,
        help="export folder; its facesets are the known identities",
    )
    add_params_flags(parser, DiscoverParams, skip=("dry_run",))
    parser.add_argument(
        "--top-n",
        type=int,
        default=ExportSwapParams().top_n,
        help="crops in each _topN bundle (default %(default)s)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print cluster sizes and survivors from what the store holds; write nothing",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "inference", "clustering", "export")


def discover_job(args: argparse.Namespace) -> DiscoverRequest:
    params = params_from_args(DiscoverParams, args, dry_run=args.dry_run)
    return DiscoverRequest(
        args.store.resolve(), args.root.resolve(), args.export_dir.resolve(), params
    )


def format_clusters(summary: Mapping[str, object]) -> list[str]:
    lines = [f"{'cluster':>7} {'faces':>6} {'survivors':>9} {'photos':>6}  kept"]
    clusters = summary.get("clusters", [])
    for index, cluster in enumerate(clusters if isinstance(clusters, list) else [], start=1):
        lines.append(
            f"{index:>7} {cluster['size']:>6} {cluster['survivors']:>9} {cluster['photos']:>6}"
            f"  {'yes' if cluster['kept'] else 'no'}"
        )
    return lines


def run_discover(args: argparse.Namespace) -> int:
    job = discover_job(args)  # parameters are checked before any service starts
    export_params = ExportSwapParams(top_n=args.top_n)
    if not job.root.is_dir():
        raise ConfigError(f"{job.root} is not a folder")
    _check_store(job.store, job.params.dry_run)
    with services(args, job.roots()) as opened:
        embedded = {} if job.params.dry_run else embed_folders(opened, [job.root], job.store)
        found = stages.clustering_job(opened, job).as_dict()
        exported: dict[str, object] = {}
        if found.get("export_needed"):
            plan = job.export / layout.DISCOVER_DIR / layout.REFINE_MANIFEST
            exported = export_plan(opened, job.store, plan, job.export, export_params)
    if not args.json:
        print("\n".join(format_clusters(found)))
    print_summary({"embed": embedded, **found, "export": exported}, args.json)
    hints.say(hints.discover(found, job.root, job.store))
    return 0


COMMANDS = {
    "import-folders": (IMPORT_HELP, add_import_arguments, run_import),
    "discover": (DISCOVER_HELP, add_discover_arguments, run_discover),
}
