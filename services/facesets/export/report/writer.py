"""Writing the report: thumbnails first, then the detail pages, then the overview, then the
removal of what the previous report wrote and this one did not.

Every file is written to a temporary file and renamed, so a reader sees each page whole, and
the overview is renamed into place only after every page and thumbnail it links exists.
`OUT/report/report.json` records the files the report owns; nothing else under OUT/report is
ever removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from facesets.contract import layout
from facesets.export.report import faceset_page as pages
from facesets.export.report.model import ReportModel, read_manifest, read_model
from facesets.export.report.overview import overview
from facesets.export.report.thumbnails import ThumbnailCache

log = structlog.get_logger(__name__)

Progress = Callable[[str, int, int], None]
STATE_VERSION = 1


@dataclass
class ReportResult:
    index: Path
    summary: dict[str, Any]


def _write_if_changed(path: Path, text: str) -> bool:
    data = text.encode("utf-8")
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    layout.atomic_write_bytes(path, data)
    return True


def _pages(model: ReportModel, thumbs: dict[str, str]) -> dict[str, str]:
    """Every page but the overview, by path inside OUT/report."""
    written = {entry.page: pages.entry_page(model, entry, thumbs) for entry in model.entries()}
    written[pages.DROPPED_PAGE] = pages.dropped_page(model, thumbs)
    if model.candidates is not None:
        written[pages.CANDIDATES_PAGE] = pages.candidates_page(model, thumbs)
    if model.lookalikes is not None:
        written[pages.LOOKALIKES_PAGE] = pages.lookalikes_page(model, thumbs)
    return written


def _owned(report_dir: Path) -> list[str]:
    state = read_manifest(report_dir / layout.REPORT_STATE)
    files = state.get("files")
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _remove_stale(report_dir: Path, previous: list[str], current: set[str]) -> int:
    removed = 0
    root = report_dir.resolve()
    for rel in previous:
        if rel in current:
            continue
        path = (report_dir / rel).resolve()
        if path.is_relative_to(root) and path != root and path.is_file():
            path.unlink()
            removed += 1
    for folder in sorted((report_dir / layout.REPORT_PAGES_DIR).glob("*"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a partition that no longer exists
    return removed


def build_report(out: Path, progress: Progress | None = None) -> ReportResult:
    """Write OUT/report from the export manifests; what it wrote, as a summary."""
    out = Path(out).absolute()
    model = read_model(out)  # ReportError before anything is written
    report_dir = out / layout.REPORT_DIR
    cache = ThumbnailCache(out, report_dir / layout.REPORT_THUMBS_DIR)
    thumbs = cache.build(model.image_files(), progress)

    written = _pages(model, thumbs)
    index_text = overview(model, thumbs)
    previous = _owned(report_dir)
    current = set(written) | {layout.REPORT_INDEX}
    # Owned before written: an interrupted run still knows which files to clean up later.
    state_path = report_dir / layout.REPORT_STATE
    layout.atomic_write_json(
        state_path, {"version": STATE_VERSION, "files": sorted(current | set(previous))}
    )
    changed = 0
    for done, (rel, text) in enumerate(sorted(written.items()), 1):
        changed += _write_if_changed(report_dir / rel, text)
        if progress and (done % 32 == 0 or done == len(written)):
            progress("pages", done, len(written))
    index = report_dir / layout.REPORT_INDEX
    changed += _write_if_changed(index, index_text)
    removed = _remove_stale(report_dir, previous, current)
    pruned = cache.prune(set(thumbs.values()))
    layout.atomic_write_json(state_path, {"version": STATE_VERSION, "files": sorted(current)})
    summary = {
        "report": str(index),
        "report_entries": sum(1 for _ in model.entries()),
        "report_pages": len(written) + 1,
        "report_pages_changed": changed,
        "report_pages_removed": removed,
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
