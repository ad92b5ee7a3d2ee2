"""`facesets immich import --user LABEL`: embed what `immich stage` staged, then route faces to
known identities, build new facesets from the rest, and export them."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from facesets.contract import layout
from facesets.contract.clustering import RouteParams, RouteRequest
from facesets.contract.export import ExportSwapParams, ExportSwapRequest
from facesets.contract.gates import explain_empty
from facesets.contract.immich import describe
from facesets.contract.layout import read_json
from facesets.orchestrator import stages
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.embed import EmbedSummary, embed_files
from facesets.orchestrator.flags import add_params_flags, params_from_args
from facesets.orchestrator.immich.state import StagingFileError, read_queue_file, through_link
from facesets.orchestrator.immich_people import PEOPLE_MODES, PeopleSummary, people_seeds
from facesets.orchestrator.settings import SETTINGS


class NothingStagedError(RuntimeError):
    """Nothing staged to import, or a layout that does not fit."""


@dataclass(frozen=True)
class StagedPhoto:
    """One photo of the staging queue: its absolute path and its sha256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class StagedQueue:
    """The staging queue as found on disk: the photos to embed, and those left out."""

    photos: list[StagedPhoto]
    missing: list[str]  # staged, no longer in the folder (deleted or moved since)
    linked: list[str]  # in the folder as a link, or under one: not read
    changed: list[str]  # another size than staged: not read

    def warnings(self, user_dir: Path) -> list[str]:
        lines = []
        if self.missing:
            lines.append(
                f"warning: {len(self.missing)} staged photo(s) are no longer in {user_dir} "
                f"(first: {self.missing[0]}); `facesets immich stage` fetches them again"
            )
        if self.changed:
            lines.append(
                f"warning: {len(self.changed)} staged photo(s) changed since they were staged "
                f"and are not read (first: {self.changed[0]}); `facesets immich stage` fetches "
                "them again"
            )
        if self.linked:
            lines.append(
                f"warning: {len(self.linked)} staged photo(s) are links, or lie under one, and "
                f"are not read (first: {self.linked[0]}); staging writes plain files only"
            )
        return lines


def read_queue(user_dir: Path) -> StagedQueue:
    """queue.json of a staging folder (user_dir, resolved), checked: its paths are taken under
    the folder it is in, whatever folder it was written in, and never through a link."""
    path = user_dir / layout.IMMICH_QUEUE
    try:
        queue = read_queue_file(path)
    except StagingFileError as error:
        raise NothingStagedError(str(error)) from error
    if queue is None:
        raise NothingStagedError(f"nothing staged in {user_dir}: run `facesets immich stage` first")
    photos, missing, linked, changed = [], [], [], []
    for item in queue.items:
        if through_link(user_dir, item.path):
            linked.append(item.path)
            continue
        try:
            found = os.lstat(user_dir / item.path)
        except OSError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            missing.append(item.path)
        elif found.st_size != item.size:  # its bytes are not those staged
            # (Its time is not compared: a folder copied without its times would have every
            # photo hashed here, before the embed hashes them again; stage does compare it.)
            changed.append(item.path)
        else:
            photos.append(StagedPhoto(str(user_dir / item.path), item.sha256))
    if queue.items and not photos:
        raise NothingStagedError(
            f"none of the {len(queue.items)} photos staged in {user_dir} is there to read "
            f"({len(missing)} missing, {len(linked)} links, {len(changed)} changed): run "
            "`facesets immich stage` again"
        )
    return StagedQueue(photos, missing, linked, changed)


@dataclass
class ImportSummary:
    """What `immich import` did: its stages' summaries and where it wrote."""

    people_mode: str
    people: PeopleSummary
    disagreements: list[object]  # the export's (with their strips), else route's
    staged: int  # the staged photos read now
    left_out: dict[str, int]  # staged photos not read: missing, links, changed
    embed: EmbedSummary
    route: dict[str, object]
    export: dict[str, object]
    store: Path
    facesets_dir: Path
    out: Path

    def as_dict(self) -> dict[str, object]:
        """The --json form."""
        return {
            "people": {"mode": self.people_mode, **self.people},
            "immich_disagreements": self.disagreements,
            "staged": self.staged,
            "staged_left_out": self.left_out,
            "embed": self.embed.as_dict(),
            "route": self.route,
            "export": self.export,
            "store": str(self.store),
            "facesets_dir": str(self.facesets_dir),
            "out": str(self.out),
        }


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


def import_user(opened: Services, request: ImportRequest) -> ImportSummary:
    user_dir = request.user_dir
    store = (request.store or user_dir / layout.IMMICH_STORE).resolve()
    facesets_dir = (request.facesets_dir or user_dir / "facesets").resolve()
    out = (request.out or user_dir / "export").resolve()
    queue = read_queue(user_dir)
    for line in queue.warnings(user_dir):
        print(line, file=sys.stderr, flush=True)
    print(f"[1/3] embed {len(queue.photos)} staged photos", file=sys.stderr, flush=True)
    embedded = embed_files(opened, [item.path for item in queue.photos], store, within=user_dir)
    print("[2/3] match identities", file=sys.stderr, flush=True)
    people = people_seeds(opened, user_dir, store, request.people)
    route = RouteRequest(
        store,
        facesets_dir,
        sorted({item.sha256 for item in queue.photos}),
        request.route,
        seeds=people.seeds,
    )
    routed = stages.clustering_job(opened, route).as_dict()
    exported: dict[str, object] = {}
    manifest = facesets_dir / layout.REFINE_MANIFEST
    if manifest.exists():
        print("[3/3] export", file=sys.stderr, flush=True)
        export = ExportSwapRequest(store, manifest, out, params=request.export)
        exported = stages.export_swap(opened, export).as_dict()
        if people.seeds:  # the review report lists the disagreements beside the facesets
            stages.report(opened, out, show_progress=False)
    exported_list = (read_json(out / layout.EXPORT_MANIFEST) or {}).get("immich_disagreements")
    routed_list = routed.get("immich_disagreements", [])
    return ImportSummary(
        people_mode=request.people,
        people=people.as_dict(),
        disagreements=exported_list
        if exported and isinstance(exported_list, list)
        else routed_list
        if isinstance(routed_list, list)
        else [],
        staged=len(queue.photos),
        left_out={
            "missing": len(queue.missing),
            "links": len(queue.linked),
            "changed": len(queue.changed),
        },
        embed=embedded,
        route=routed,
        export=exported,
        store=store,
        facesets_dir=facesets_dir,
        out=out,
    )


def format_summary(result: ImportSummary) -> str:
    embed, route = result.embed, result.route
    explanation = explain_empty(route)
    return "\n".join(
        [
            f"staged photos            {result.staged}"
            + (
                f" ({result.left_out['missing']} missing, {result.left_out['links']} links, "
                f"{result.left_out['changed']} changed: left out)"
                if any(result.left_out.values())
                else ""
            ),
            f"embedded now             {embed.embedded} ({embed.faces_found} faces), "
            f"already in the store {embed.known}",
            f"faces matched to known   {route.get('faces_matched', 0)} "
            f"into {route.get('identities_matched', 0)} identities",
            f"new identities           {route.get('new_facesets', 0)} "
            f"({route.get('faces_new', 0)} faces)",
            f"faces left unassigned    {route.get('faces_unassigned', 0)}",
            f"export                   {result.out}",
            *([explanation] if explanation else []),
            *people_lines(result),
        ]
    )


def people_lines(result: ImportSummary) -> list[str]:
    """Immich's people: the facesets they named and every disagreement, each with its strip."""
    if result.people_mode == "none":
        return []
    people = result.people
    renamed = result.route.get("immich_renamed", {})
    lines = [
        f"Immich people ({result.people_mode})  {len(people['people'])} seeded "
        f"({people['faces_matched']} faces matched, "
        f"{people['faces_unmatched']} without a detection)",
        *(
            f"  renamed  {old} -> {new}"
            for old, new in (renamed.items() if isinstance(renamed, dict) else ())
        ),
    ]
    items = [item for item in result.disagreements if isinstance(item, dict)]
    lines.append(f"disagreements with Immich  {len(result.disagreements)}")
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
    print(
        json.dumps(result.as_dict(), indent=2, default=str) if args.json else format_summary(result)
    )
    return 0
