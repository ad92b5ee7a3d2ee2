"""Writing the report: thumbnails first, then the detail pages, then the overview, then the
removal of what the previous report wrote and this one did not.

Every file is written to a temporary file and renamed, so a reader sees each page whole, and
the overview is renamed into place only after every page and thumbnail it links exists.
`OUT/report/report.json` records the files the report owns; nothing else under OUT/report is
ever removed.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from facesets.common import settings
from facesets.common.beneath import Beneath, SymlinkRefusedError, is_relative
from facesets.contract import layout
from facesets.export.maintenance import journal
from facesets.export.maintenance.runs import guard, guard_folders
from facesets.export.report import faceset_page as pages
from facesets.export.report.model import Entry, ReportModel, read_manifest, read_model
from facesets.export.report.overview import overview
from facesets.export.report.summaries import Summaries
from facesets.export.report.thumbnails import ThumbnailCache

log = structlog.get_logger(__name__)

Progress = Callable[[str, int, int], None]
STATE_VERSION = 1


@dataclass
class ReportResult:
    index: Path
    summary: dict[str, object]


def _write_if_changed(disk: Beneath, rel: str, text: str) -> bool:
    data = text.encode("utf-8")
    info = disk.lstat(rel)
    if info is not None and info.st_size == len(data) and disk.read_bytes(rel) == data:
        return False
    disk.write_bytes(rel, data)
    return True


def _pages(
    model: ReportModel, thumbs: dict[str, str], only: Callable[[Entry], bool] | None = None
) -> dict[str, str]:
    """Every page but the overview, by path inside OUT/report (`only`: the entry pages to
    render; the others are left as they are)."""
    written = {
        entry.page: pages.entry_page(model, entry, thumbs)
        for entry in model.entries()
        if only is None or only(entry)
    }
    written[pages.DROPPED_PAGE] = pages.dropped_page(model, thumbs)
    if model.candidates is not None:
        written[pages.CANDIDATES_PAGE] = pages.candidates_page(model, thumbs)
    if model.lookalikes is not None:
        written[pages.LOOKALIKES_PAGE] = pages.lookalikes_page(model, thumbs)
    return written


def _write_state(disk: Beneath, rel: str, files: list[str]) -> None:
    """report.json as Beneath.write_json writes it; left alone when it says so already (a
    review action's refresh owns the same files as the report before it)."""
    payload = {"version": STATE_VERSION, "files": files}
    _write_if_changed(
        disk, rel, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def _owned(out: Path) -> list[str]:
    state = read_manifest(out, f"{layout.REPORT_DIR}/{layout.REPORT_STATE}")
    files = state.get("files")
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _remove_stale(disk: Beneath, previous: list[str], current: set[str]) -> int:
    """Files the previous report wrote that this one did not; only plain paths inside
    OUT/report count (report.json is a file anyone who can write the folder may edit)."""
    removed = 0
    for rel in previous:
        if rel in current or not is_relative(rel):
            continue
        path = f"{layout.REPORT_DIR}/{rel}"
        if disk.is_file(path):
            disk.unlink(path)
            removed += 1
    pages_dir = f"{layout.REPORT_DIR}/{layout.REPORT_PAGES_DIR}"
    for name, info in reversed(disk.entries(pages_dir)):
        if stat.S_ISDIR(info.st_mode):
            disk.rmdir(f"{pages_dir}/{name}")  # a partition that no longer exists, if empty
    return removed


def _refuse_linked_folders(disk: Beneath) -> None:
    """A link among report/'s entries or its page folders: refused before anything is read.
    (Every write goes through Beneath as well, which follows none.)"""
    pages_dir = f"{layout.REPORT_DIR}/{layout.REPORT_PAGES_DIR}"
    for folder in (layout.REPORT_DIR, pages_dir):
        if not disk.is_dir(folder):
            continue
        for name, info in disk.entries(folder):
            if stat.S_ISLNK(info.st_mode):
                raise SymlinkRefusedError(
                    f"{disk.root / folder / name} is a symbolic link inside {disk.root}; the "
                    "report is never written through a link: replace it with the folder itself"
                )


def _touched_images(model: ReportModel, names: set[str]) -> list[str]:
    """The images an update for the facesets `names` shows: their crops and drops, every
    entry's top crops (the overview), and the drop, candidate and look-alike pages' images."""
    files: dict[str, None] = {}
    for entry in model.entries():
        crops = (
            entry.crops
            if entry.name in names
            else entry.top_crops[: settings.export().report.row_thumbs]
        )
        files.update((c.file, None) for c in crops)
        files.update((d.thumbnail, None) for d in entry.dropped if d.thumbnail)
    for candidate in model.candidates or []:
        files[candidate.file] = None
    for pair in model.lookalikes or []:
        for rels in pair.crops.values():
            files.update((rel, None) for rel in rels)
    return list(files)


def build_report(
    out: Path, progress: Progress | None = None, touched: set[str] | None = None
) -> ReportResult:
    """Write OUT/report from the export manifests; what it wrote, as a summary.

    `touched`: the facesets a review action changed: only they are read again from their
    manifests, with any whose summary row no longer holds (summaries.py), and only their pages
    are rendered again (with the overview and the drop, candidate and look-alike pages, and any
    page missing); thumbnails no page uses any more stay until the next full report."""
    out = Path(out).absolute()
    disk = Beneath(out)
    # report/ or a faceset linked elsewhere: nothing is written through it; a maintenance run
    # a crash cut short is rolled back before the report reads the export.
    if touched is None:
        guard(out)
    else:  # every access goes through Beneath (no link followed); the touched folders are
        # walked, report/ and its folders looked at (its thumbnails are not walked one by one)
        journal.recover(out)
        _refuse_linked_folders(disk)
        guard_folders(out, touched)
    # A refresh reuses the rows of the facesets it did not touch (summaries.json).
    summaries = Summaries(out, touched)
    model = read_model(out, summaries.entry_of)  # ReportError before anything is written
    report_dir = out / layout.REPORT_DIR
    cache = ThumbnailCache(out, report_dir / layout.REPORT_THUMBS_DIR)
    if touched is None:
        known: dict[str, str] = {}
        images = model.image_files()
    else:
        known = summaries.thumbnails()
        read = {entry.name for entry in model.entries() if summaries.is_read(entry)}
        images = [rel for rel in _touched_images(model, read) if rel not in known]
    thumbs = known | cache.build(images, progress)
    # A refresh renders the pages of the entries it read (touched, changed or missing).
    written = _pages(model, thumbs, None if touched is None else summaries.is_read)
    index_text = overview(model, thumbs, summaries.key_of)
    previous = _owned(out)
    current = set(written) | {layout.REPORT_INDEX} | {e.page for e in model.entries()}
    current.add(layout.REPORT_SUMMARIES)
    # Owned before written: an interrupted run still knows which files to clean up later.
    state_rel = f"{layout.REPORT_DIR}/{layout.REPORT_STATE}"
    _write_state(disk, state_rel, sorted(current | set(previous)))
    changed = 0
    for done, (rel, text) in enumerate(sorted(written.items()), 1):
        changed += _write_if_changed(disk, f"{layout.REPORT_DIR}/{rel}", text)
        if progress and (done % 32 == 0 or done == len(written)):
            progress("pages", done, len(written))
    summaries_text = summaries.text(list(model.entries()), thumbs)
    _write_if_changed(disk, f"{layout.REPORT_DIR}/{layout.REPORT_SUMMARIES}", summaries_text)
    summaries.remember()
    index = report_dir / layout.REPORT_INDEX
    changed += _write_if_changed(disk, f"{layout.REPORT_DIR}/{layout.REPORT_INDEX}", index_text)
    removed = _remove_stale(disk, previous, current)
    pruned = cache.prune(set(thumbs.values())) if touched is None else 0
    _write_state(disk, state_rel, sorted(current))
    summary = {
        "report": str(index),
        "report_entries": sum(1 for _ in model.entries()),
        "report_pages": len(written) + 1,
        "report_pages_changed": changed,
        "report_pages_removed": removed,
        "report_rows_reused": len(summaries.reused),  # entries not read again (a refresh)
        "thumbnails": len(thumbs),
        "thumbnails_made": cache.stats.made,
        "thumbnails_removed": pruned,
        "images_missing": cache.stats.failed,
    }
    log.info("report.written", **summary)
    return ReportResult(index, summary)


def write_report(out: Path, progress: Progress | None = None) -> Path:
    """Write OUT/report/index.html (and its pages and thumbnails); return the overview's path."""
    return build_report(out, progress).index
