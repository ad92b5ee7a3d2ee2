"""`facesets immich import --user LABEL`: embed what `immich stage` staged, then route faces to
known identities, build new facesets from the rest, and export them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from facesets.contract import layout
from facesets.contract.clustering import RouteParams, RouteRequest
from facesets.contract.export import ExportSwapParams, ExportSwapRequest
from facesets.contract.gates import explain_empty
from facesets.contract.immich import describe
from facesets.contract.layout import read_json
from facesets.orchestrator import stages
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.embed import embed_files
from facesets.orchestrator.flags import add_params_flags, params_from_args
from facesets.orchestrator.immich_people import PEOPLE_MODES, people_seeds
from facesets.orchestrator.settings import SETTINGS


class NothingStagedError(RuntimeError):
    """Nothing staged to import, or a layout that does not fit."""


def read_queue(user_dir: Path) -> list[dict[str, Any]]:
    queue = read_json(user_dir / layout.IMMICH_QUEUE)
    if queue is None:
        raise NothingStagedError(f"nothing staged in {user_dir}: run `facesets immich stage` first")
    root = Path(queue.get("root") or user_dir)
    items = []
    for item in queue.get("items", []):
        path = Path(item["path"])
        items.append({**item, "path": str(path if path.is_absolute() else root / path)})
    return items


@dataclass(frozen=True)
class ImportRequest:
    """One user's staged photos into their store, facesets and export folder."""

    user: str
    staging_root: Path = Path(SETTINGS.immich.staging_root)
    store: Path | None = None  # default STAGING_ROOT/USER/IMMICH_STORE
    facesets_dir: Path | None = None  # default STAGING_ROOT/USER/facesets
    out: Path | None = None  # default STAGING_ROOT/USER/export
    route: RouteParams = field(default_factory=RouteParams)
    export: ExportSwapParams = field(default_factory=ExportSwapParams)
    people: str = "named"  # Immich's people: named | all | none (immich_people.py)

    @property
    def user_dir(self) -> Path:
        return (self.staging_root / self.user).resolve()

    def roots(self) -> list[Path]:
        """The staged photos, the store and the output folders."""
        return [self.user_dir, *(p for p in (self.store, self.facesets_dir, self.out) if p)]


# RouteParams and ExportSwapParams share gate names (outlier_threshold); the export offers top_n.
EXPORT_SKIP = tuple(f.name for f in fields(ExportSwapParams) if f.name != "top_n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", required=True, help="label of the library, as staged")
    parser.add_argument(
        "--staging-root",
        type=Path,
        default=ImportRequest("").staging_root,
        help="where `immich stage` put the photos (default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        help=f"the user's face store (default STAGING_ROOT/USER/{layout.IMMICH_STORE})",
    )
    parser.add_argument(
        "--facesets-dir",
        type=Path,
        help="the user's facesets (refine output; default STAGING_ROOT/USER/facesets)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="export folder with the master manifest (default STAGING_ROOT/USER/export)",
    )
    parser.add_argument(
        "--people",
        choices=PEOPLE_MODES,
        default="named",
        help="Immich's people: 'named' seeds a named faceset per named person (default), 'all' "
        "also groups unnamed people's faces, 'none' ignores them",
    )
    add_params_flags(parser, RouteParams)
    add_params_flags(parser.add_argument_group("export"), ExportSwapParams, EXPORT_SKIP)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_service_arguments(parser, "inference", "clustering", "export")


def import_request(args: argparse.Namespace) -> ImportRequest:
    return ImportRequest(
        user=args.user,
        staging_root=args.staging_root,
        store=args.store,
        facesets_dir=args.facesets_dir,
        out=args.out,
        route=params_from_args(RouteParams, args),
        export=params_from_args(ExportSwapParams, args, EXPORT_SKIP),
        people=args.people,
    )


def import_user(opened: Services, request: ImportRequest) -> dict[str, Any]:
    user_dir = request.user_dir
    store = (request.store or user_dir / layout.IMMICH_STORE).resolve()
    facesets_dir = (request.facesets_dir or user_dir / "facesets").resolve()
    out = (request.out or user_dir / "export").resolve()
    queue = read_queue(user_dir)
    print(f"[1/3] embed {len(queue)} staged photos", file=sys.stderr, flush=True)
    embedded = embed_files(opened, [item["path"] for item in queue], store)
    print("[2/3] match identities", file=sys.stderr, flush=True)
    people = people_seeds(opened, user_dir, store, request.people)
    route = RouteRequest(
        store,
        facesets_dir,
        sorted({item["sha256"] for item in queue}),
        request.route,
        seeds=people.seeds,
    )
    routed = stages.clustering_job(opened, route).as_dict()
    exported: dict[str, Any] = {}
    manifest = facesets_dir / layout.REFINE_MANIFEST
    if manifest.exists():
        print("[3/3] export", file=sys.stderr, flush=True)
        export = ExportSwapRequest(store, manifest, out, params=request.export)
        exported = stages.export_swap(opened, export).as_dict()
        if people.seeds:  # the review report lists the disagreements beside the facesets
            stages.report(opened, out, show_progress=False)
    exported_list = (read_json(out / layout.EXPORT_MANIFEST) or {}).get("immich_disagreements")
    return {
        "people": {"mode": request.people, **people.as_dict()},
        "immich_disagreements": exported_list
        if exported and isinstance(exported_list, list)
        else routed.get("immich_disagreements", []),
        "staged": len(queue),
        "embed": embedded.as_dict(),
        "route": routed,
        "export": exported,
        "store": str(store),
        "facesets_dir": str(facesets_dir),
        "out": str(out),
    }


def format_summary(result: dict[str, Any]) -> str:
    embed, route = result["embed"], result["route"]
    explanation = explain_empty(route)
    return "\n".join(
        [
            f"staged photos            {result['staged']}",
            f"embedded now             {embed['embedded']} ({embed['faces_found']} faces), "
            f"already in the store {embed['known']}",
            f"faces matched to known   {route.get('faces_matched', 0)} "
            f"into {route.get('identities_matched', 0)} identities",
            f"new identities           {route.get('new_facesets', 0)} "
            f"({route.get('faces_new', 0)} faces)",
            f"faces left unassigned    {route.get('faces_unassigned', 0)}",
            f"export                   {result['out']}",
            *([explanation] if explanation else []),
            *people_lines(result),
        ]
    )


def people_lines(result: dict[str, Any]) -> list[str]:
    """Immich's people: the facesets they named and every disagreement, each with its strip."""
    people = result.get("people") or {}
    if people.get("mode", "none") == "none":
        return []
    route = result["route"]
    lines = [
        f"Immich people ({people['mode']})  {len(people.get('people', {}))} seeded "
        f"({people.get('faces_matched', 0)} faces matched, "
        f"{people.get('faces_unmatched', 0)} without a detection)",
        *(f"  renamed  {old} -> {new}" for old, new in route.get("immich_renamed", {}).items()),
    ]
    items = result.get("immich_disagreements") or []
    lines.append(f"disagreements with Immich  {len(items)}")
    for item in items:
        strip = item.get("file")
        lines.append(f"  {describe(item)}" + (f"  [{strip}]" if strip else ""))
    return lines


def run(args: argparse.Namespace) -> int:
    request = import_request(args)  # parameters are checked before any service starts
    try:
        with services(args, request.roots()) as opened:
            result = import_user(opened, request)
    except NothingStagedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str) if args.json else format_summary(result))
    return 0
