"""The report's first screen, OUT/report/index.html: one row per faceset of every partition,
find and filter, and the export's other sections (inline when small, a link when large)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from facesets.common import settings
from facesets.contract import gates as gate_text
from facesets.contract import layout
from facesets.export.report import faceset_page as pages
from facesets.export.report import immich_section
from facesets.export.report.assets import FILTER_SCRIPT
from facesets.export.report.markup import Links, e, figure, flag_badges, page
from facesets.export.report.model import FLAGS, Entry, ReportModel

RowKey = Callable[[Entry], "str | None"]
VISIBLE_SOURCES = 3  # source folders listed in a row before the rest fold away


def _sources(entry: Entry) -> str:
    items = "".join(f"<li>{e(s)}</li>" for s in entry.sources)
    if len(entry.sources) <= VISIBLE_SOURCES:
        return f'<ul class="sources find">{items}</ul>'
    return (
        f'<details class="sources find"><summary>{len(entry.sources)} source folders</summary>'
        f"<ul>{items}</ul></details>"
    )


def _row(links: Links, entry: Entry) -> str:
    strip = "".join(
        figure(links, c.file, f"#{c.rank} · {c.composite:.2f}", f"#{c.rank}", "top")
        for c in entry.top_crops[: settings.export().report.row_thumbs]
    )
    return (
        f'<section class="card" data-faceset="{e(entry.name)}" '
        f'data-partition="{e(entry.partition)}" data-flags="{e(" ".join(entry.flags))}" '
        f'data-size="{entry.kept}" data-quality="{entry.mean_quality:.4f}">'
        f'<div class="row-head"><h3 class="find"><a href="{e(links.report(entry.page))}">'
        f"{e(entry.name)}</a>"
        + (f' <span class="label">{e(entry.label)}</span>' if entry.label else "")
        + "</h3>"
        f'<span class="part">{e(entry.partition)}</span>{flag_badges(entry.flags)}</div>'
        + pages.entry_meta(links, entry)
        + (f'<div class="strip">{strip}</div>' if strip else "")
        + _sources(entry)
        + "</section>"
    )


def _explanation(value: Any) -> str:
    """The manifest's account of an empty or thin result, as the export wrote it."""

    def text(item: Any) -> str:
        return item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)

    if isinstance(value, Mapping):
        body = (
            "<ul>"
            + "".join(f"<li><b>{e(k)}</b>: {e(text(v))}</li>" for k, v in value.items())
            + "</ul>"
        )
    elif isinstance(value, list):
        body = "<ul>" + "".join(f"<li>{e(text(v))}</li>" for v in value) + "</ul>"
    else:
        body = f"<p>{e(text(value))}</p>"
    return (
        f'<section class="card explain" data-section="explanation"><h3>Why this result</h3>'
        f"{body}</section>"
    )


def _gates(gates: Mapping[str, Any] | None, empty: bool) -> str:
    """Faces each gate removed; headed as the explanation of an empty result when nothing
    reached a faceset."""
    if gates:
        table_rows = "".join(
            f"<tr><td>{e(label)}</td><td class=n>{count}</td><td>{e(why)}</td></tr>"
            for label, count, why in gate_text.rows(gates)
        )
        table = (
            f"<p>{e(gate_text.headline(gates))}</p><table class=gates>{table_rows}<tr><td>kept"
            f"</td><td class=n>{e(gates.get('kept', 0))}</td><td>in facesets</td></tr></table>"
            + "".join(f"<p>{e(line)}</p>" for line in gate_text.notes(gates))
        )
    else:
        table = "<p class=none>this export records no per-gate counts</p>"
    if empty:
        return (
            '<section class="card empty" data-section="empty"><h2>No faceset</h2>'
            f"<p>No faceset passed the gates. Faces removed, gate by gate:</p>{table}</section>"
        )
    return f'<section class="card" data-section="gates"><h3>Gates</h3>{table}</section>'


def _filters(model: ReportModel) -> str:
    present = sorted({f for entry in model.entries() for f in entry.flags})
    flags = [f for f in FLAGS if f in present] + [f for f in present if f not in FLAGS]
    flag_options = "".join(f'<option value="{e(f)}">{e(f)}</option>' for f in flags)
    part_options = "".join(
        f'<option value="{e(p.key)}">{e(p.title)}</option>' for p in model.partitions
    )
    total = sum(len(p.entries) for p in model.partitions)
    return (
        '<form class="filters" onsubmit="return false">'
        '<input id="q" type="search" placeholder="find by name or source folder" '
        'aria-label="find">'
        f'<select id="flag" aria-label="flag"><option value="">any flag</option>{flag_options}'
        "</select>"
        f'<select id="part" aria-label="partition"><option value="">every partition</option>'
        f"{part_options}</select>"
        '<select id="sort" aria-label="sort"><option value="">sort: as listed</option>'
        '<option value="name">name</option><option value="size">size, largest first</option>'
        '<option value="size-asc">size, smallest first</option>'
        '<option value="quality">quality, best first</option>'
        '<option value="quality-asc">quality, worst first</option></select>'
        f'<span><span id="shown">{total}</span> of {total} shown</span></form>'
    )


def _partition_list(links: Links, model: ReportModel, dropped: int) -> str:
    items = [
        f'<li data-partition="{e(p.key)}"><a href="#part={e(p.key)}">{e(p.title)}</a>: '
        f"{len(p.entries)}</li>"
        for p in model.partitions
    ]
    if model.candidates is not None:
        items.append(
            f'<li data-partition="candidates"><a href="{e(links.report(pages.CANDIDATES_PAGE))}">'
            f"Candidates</a>: {len(model.candidates)}</li>"
        )
    if model.lookalikes is not None:
        items.append(
            f'<li data-partition="lookalikes"><a href="{e(links.report(pages.LOOKALIKES_PAGE))}">'
            f"Look-alike pairs</a>: {len(model.lookalikes)}</li>"
        )
    items.append(
        f'<li><a href="{e(links.report(pages.DROPPED_PAGE))}">Rejected and dropped</a>: '
        f"{dropped}</li>"
    )
    return f'<ul class="parts">{"".join(items)}</ul>'


def _legend(model: ReportModel) -> str:
    """What the flags that come from a threshold mean in this export."""
    thin = (
        f"thin: fewer than {model.thin_below} kept crops (a "
        f"{settings.export().report.thin_fraction:g} fraction of the median faceset, between "
        f"{settings.export().report.thin_min_crops} and {settings.export().report.thin_crops})"
    )
    small = pages.small_px_of(model)
    dropped = f" · small: a face under {small:.0f}px on its short edge" if small else ""
    return f'<p class="legend" data-thin-below="{model.thin_below}">{e(thin + dropped)}</p>'


def _more(section: str, count: int, noun: str, href: str) -> str:
    return (
        f'<section class="card" data-section="{section}"><h3>{noun}: {count}</h3>'
        f'<p><a href="{e(href)}">review all {count} {noun}</a> on their own page</p></section>'
    )


# The rows rendered last, by what each shows: a refresh after a review action renders again
# only the rows that changed (this process's own output, never read from disk).
_RENDERED: dict[tuple[object, ...], str] = {}


def _rows(links: Links, model: ReportModel, row_key: RowKey | None) -> str:
    global _RENDERED
    rendered: dict[tuple[object, ...], str] = {}
    rows: list[str] = []
    count = settings.export().report.row_thumbs
    for entry in model.entries():
        key = row_key(entry) if row_key else None
        if key is None:
            rows.append(_row(links, entry))
            continue
        strip = tuple(links.thumbs.get(c.file) for c in entry.top_crops[:count])
        shown = (str(model.out), key, entry.partition, entry.name, tuple(entry.flags), strip)
        row = _RENDERED.get(shown)
        rendered[shown] = row = row if row is not None else _row(links, entry)
        rows.append(row)
    _RENDERED = rendered
    return "".join(rows)


def overview(model: ReportModel, thumbs: dict[str, str], row_key: RowKey | None = None) -> str:
    """`row_key`: a key that changes whenever what an entry holds does (its summary row's)."""
    links = Links(layout.REPORT_INDEX, thumbs)
    inline = settings.export().report.inline_items
    rows = _rows(links, model, row_key)
    dropped = pages.all_dropped(model)
    kept = sum(entry.kept for entry in model.entries())
    facesets = sum(len(p.entries) for p in model.partitions if p.key == "facesets")
    empty = facesets == 0 or kept == 0
    body = (
        "<h1>facesets export</h1>"
        f"<div class='totals'>{e(model.out)} · {facesets} facesets · {kept} crops · "
        f"{len(dropped)} dropped</div>"
        + (_explanation(model.explanation) if model.explanation is not None else "")
        + (_gates(model.gates, True) if empty else "")
        + _partition_list(links, model, len(dropped))
        + "<h2>Facesets</h2>"
        + _filters(model)
        + _legend(model)
        + f'<div id="rows">{rows or "<p class=none>no facesets</p>"}</div>'
        + ("" if empty or model.gates is None else _gates(model.gates, False))
    )
    if model.lookalikes is not None:
        pairs = model.lookalikes
        body += "<h2>Look-alike pairs</h2>" + (
            pages.lookalikes_section(links, model, pairs, False)
            if len(pairs) <= inline
            else _more("lookalikes", len(pairs), "look-alike pairs", pages.LOOKALIKES_PAGE)
        )
    if model.immich is not None:
        body += "<h2>Immich disagreements</h2>" + immich_section.section(links, model.immich)
    if model.candidates is not None:
        items = model.candidates
        body += "<h2>Candidates</h2>" + (
            pages.candidates_section(links, items)
            if len(items) <= inline
            else _more("candidates", len(items), "candidates", pages.CANDIDATES_PAGE)
        )
    body += "<h2>Rejected and dropped</h2>" + (
        pages.dropped_section(links, dropped, by_reason=False)
        if len(dropped) <= inline
        else _more("dropped", len(dropped), "dropped faces", pages.DROPPED_PAGE)
    )
    return page(f"facesets export · {model.out.name}", body, FILTER_SCRIPT)
