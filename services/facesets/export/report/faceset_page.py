"""The report's detail pages: one per faceset, and one each for candidates, dropped faces
and look-alike pairs. Each section here is also what the overview shows inline on a small
export."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from facesets.contract import layout
from facesets.export.report.markup import Links, e, figure, flag_badges, page, quality_bar
from facesets.export.report.model import Candidate, Dropped, Entry, LookalikePair, ReportModel

OVERVIEW = layout.REPORT_INDEX
CANDIDATES_PAGE = "candidates.html"
DROPPED_PAGE = "dropped.html"
LOOKALIKES_PAGE = "lookalikes.html"


def fsz_links(links: Links, entry: Entry) -> str:
    found = " ".join(
        f'<a href="{e(href)}">{e(Path(rel).name)}</a>'
        for rel in entry.fsz
        if (href := links.export(rel)) is not None
    )
    return found or "<span class=none>no .fsz</span>"


def reason_text(reason: str, small_px: float | None) -> str:
    """A drop reason as a person reads it: "small" says below which face size."""
    if reason == "small" and small_px is not None:
        return f"small (face under {small_px:.0f}px)"
    return reason


def dropped_text(entry: Entry) -> str:
    return (
        ", ".join(f"{reason_text(k, entry.small_px)} {v}" for k, v in entry.dropped_counts.items())
        or "none"
    )


def small_px_of(model: ReportModel) -> float | None:
    """The "small" gate's face size when every faceset of the export used the same one."""
    sizes = {entry.small_px for entry in model.entries() if entry.small_px is not None}
    return sizes.pop() if len(sizes) == 1 else None


def entry_meta(links: Links, entry: Entry) -> str:
    skipped = len(entry.skipped)
    return (
        '<div class="meta">'
        f"<span>{e(entry.kept)} crops of {e(entry.faces)} faces</span>"
        f"<span>top {e(entry.top)}</span>"
        + quality_bar(entry.mean_quality)
        + f"<span>re-cropped {e(entry.recropped)}</span>"
        + (f"<span class='years'>years {e(entry.years)}</span>" if entry.years else "")
        + ""
        f"<span>dropped: {e(dropped_text(entry))}</span>"
        + (f"<span class='into'>merged into {e(entry.into)}</span>" if entry.into else "")
        + (f"<span class='reason'>{skipped} unreadable sources</span>" if skipped else "")
        + f"<span>{fsz_links(links, entry)}</span></div>"
    )


def dropped_section(
    links: Links,
    rows: Sequence[tuple[str, Dropped]],
    by_reason: bool,
    small_px: float | None = None,
) -> str:
    """Dropped and rejected faces with their reasons: thumbnails where the export kept one,
    a line of text where it could not (an unreadable photo)."""
    groups: dict[str, list[tuple[str, Dropped]]] = defaultdict(list)
    for name, item in rows:
        groups[item.reason if by_reason else ""].append((name, item))
    parts: list[str] = []
    for reason in sorted(groups):
        figures: list[str] = []
        listed: list[str] = []
        for name, item in groups[reason]:
            if item.thumbnail:
                caption = f"{name} · {item.reason}" if name else item.reason
                figures.append(figure(links, item.thumbnail, caption, item.title))
            else:
                listed.append(
                    f"<li><span class='reason'>{e(item.reason)}</span> {e(name)} "
                    f"face {e(item.face_id)}: {e(item.source)} ({e(item.detail)})</li>"
                )
        label = reason_text(reason, small_px)
        head = f'<h3 class="reason">{e(label)}: {len(groups[reason])}</h3>' if reason else ""
        sheet = f'<div class="sheet">{"".join(figures)}</div>' if figures else ""
        parts.append(head + sheet + (f"<ul>{''.join(listed)}</ul>" if listed else ""))
    body = "".join(parts) or '<p class="none">none</p>'
    return (
        f'<section class="card" data-section="dropped"><h3>dropped faces: {len(rows)}</h3>'
        f"{body}</section>"
    )


def candidates_section(links: Links, items: Sequence[Candidate]) -> str:
    figures = "".join(
        figure(links, c.file, f"→ {c.nearest} · d {c.distance:.2f}", c.title) for c in items
    )
    body = f'<div class="sheet">{figures}</div>' if figures else '<p class="none">none</p>'
    return (
        f'<section class="card" data-section="candidates"><h3>candidates: {len(items)}</h3>'
        f"{body}</section>"
    )


def pair_link(links: Links, model: ReportModel, name: str) -> str:
    entry = model.entry_named(name)
    if entry is None:
        return e(name)
    return f'<a href="{e(links.report(entry.page))}">{e(name)}</a>'


def lookalikes_section(
    links: Links, model: ReportModel, pairs: Sequence[LookalikePair], with_crops: bool
) -> str:
    rows: list[str] = []
    for pair in pairs:
        facts = []
        if pair.distance is not None:
            facts.append(f"centroid distance {pair.distance:.3f}")
        if pair.shared_photos is not None:
            facts.append(f"{pair.shared_photos} shared photos")
        sheets = ""
        if with_crops:
            for name in pair.names:
                crops = pair.crops.get(name)
                if crops is None:
                    entry = model.entry_named(name)
                    crops = [c.file for c in entry.top_crops[:4]] if entry else []
                figures = "".join(figure(links, rel, name, rel) for rel in crops)
                sheets += f'<div class="strip">{figures}</div>'
        rows.append(
            f"<li>{pair_link(links, model, pair.names[0])} ↔ "
            f"{pair_link(links, model, pair.names[1])} {e(' · '.join(facts))}{sheets}</li>"
        )
    body = f"<ul>{''.join(rows)}</ul>" if rows else '<p class="none">none</p>'
    return (
        f'<section class="card" data-section="lookalikes"><h3>look-alike pairs: {len(pairs)}'
        f"</h3>{body}</section>"
    )


def _back(links: Links) -> str:
    return f'<p><a href="{e(links.report(OVERVIEW))}">← overview</a></p>'


def entry_page(model: ReportModel, entry: Entry, thumbs: dict[str, str]) -> str:
    links = Links(entry.page, thumbs)
    sheet = "".join(
        figure(links, c.file, f"#{c.rank} · {c.composite:.2f}", c.title, "top" if c.in_top else "")
        for c in entry.crops
    )
    crops = (
        f'<section class="card" data-section="crops"><h3>crops: {len(entry.crops)}</h3>'
        f'<div class="sheet">{sheet or "<p class=none>no crops</p>"}</div></section>'
    )
    sources = "".join(f"<li>{e(s)}</li>" for s in entry.sources)
    skipped = "".join(
        f"<li>face {e(s.get('face_id'))}: {e(s.get('source', ''))} ({e(s.get('error', ''))})</li>"
        for s in entry.skipped
    )
    pairs = [p for p in model.lookalikes or [] if entry.name in p.names]
    nearby = [c for c in model.candidates or [] if c.nearest == entry.name]
    body = (
        _back(links) + f'<h1 data-faceset="{e(entry.name)}">{e(entry.name)}</h1>'
        f'<div class="totals"><span class="part">{e(entry.partition)}</span>'
        f"{flag_badges(entry.flags)}</div>"
        + entry_meta(links, entry)
        + f"<h2>Contact sheet</h2>{crops}"
        + "<h2>Dropped and rejected</h2>"
        + dropped_section(links, [("", d) for d in entry.dropped], True, entry.small_px)
        + f'<h2>Source folders</h2><ul class="sources">{sources}</ul>'
        + (f"<h2>Unreadable sources</h2><ul>{skipped}</ul>" if skipped else "")
        + (f"<h2>Look-alikes</h2>{lookalikes_section(links, model, pairs, False)}" if pairs else "")
        + (f"<h2>Candidates near it</h2>{candidates_section(links, nearby)}" if nearby else "")
    )
    return page(f"{entry.name} · facesets export", body)


def all_dropped(model: ReportModel) -> list[tuple[str, Dropped]]:
    return [(entry.name, d) for entry in model.entries() for d in entry.dropped]


def dropped_page(model: ReportModel, thumbs: dict[str, str]) -> str:
    links = Links(DROPPED_PAGE, thumbs)
    body = (
        _back(links)
        + "<h1>Rejected and dropped faces</h1>"
        + dropped_section(links, all_dropped(model), True, small_px_of(model))
    )
    return page("dropped · facesets export", body)


def candidates_page(model: ReportModel, thumbs: dict[str, str]) -> str:
    links = Links(CANDIDATES_PAGE, thumbs)
    body = _back(links) + "<h1>Candidates</h1>" + candidates_section(links, model.candidates or [])
    return page("candidates · facesets export", body)


def lookalikes_page(model: ReportModel, thumbs: dict[str, str]) -> str:
    links = Links(LOOKALIKES_PAGE, thumbs)
    body = (
        _back(links)
        + "<h1>Look-alike pairs</h1><p>Facesets whose centroids are close although they share "
        "a photo: two people, or one person split in two. Judge by eye.</p>"
        + lookalikes_section(links, model, model.lookalikes or [], True)
    )
    return page("look-alikes · facesets export", body)
