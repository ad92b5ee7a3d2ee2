"""A static HTML review page of an export: OUT/report/index.html.

One card per faceset (contact sheet of its top crops, size, mean quality, source folders),
then the candidates and every dropped face with its reason. No server, no external assets:
inline CSS, relative links to the crops, so the folder can be opened or copied as it is.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

from facesets.common import gates as gate_text
from facesets.common import layout

log = structlog.get_logger(__name__)


class ReportError(ValueError):
    """The folder holds no export to report on."""


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:16px 24px;background:#f4f4f6;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
.totals{color:#555;margin-bottom:16px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:12px 16px;
  margin:0 0 16px}
.card h3{margin:0 0 6px;font-size:16px}
.meta{display:flex;flex-wrap:wrap;gap:4px 18px;color:#444;margin-bottom:8px}
.bar{display:inline-block;width:80px;height:8px;background:#ddd;border-radius:4px;
  vertical-align:middle;margin-left:6px;overflow:hidden}
.bar i{display:block;height:100%;background:#3a7}
.sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(104px,1fr));gap:6px}
.sheet figure{margin:0;text-align:center;font-size:11px;color:#555}
.sheet img{width:100%;aspect-ratio:1;object-fit:cover;border-radius:4px;background:#000;
  display:block}
.sources{font-size:12px;color:#666;margin:6px 0 0;padding-left:18px;word-break:break-all}
.reason{font-weight:600;color:#a33}.none{color:#777;font-style:italic}
a{color:#2a5db0}
.empty{border-left:6px solid #c83}.empty h2{margin:0 0 8px}
.gates td{padding:1px 14px 1px 0}.gates td.n{text-align:right;font-variant-numeric:tabular-nums}
"""

# Sets data-images on <body> once every image has loaded (or failed), for automated checks.
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute('data-image-count', String(imgs.length));
  document.body.setAttribute('data-images', broken.length ? 'broken:' + broken.length : 'ok');
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _href(rel: str) -> str:
    """Link from OUT/report/index.html to OUT/<rel>."""
    return "../" + quote(rel, safe="/")


def _img(rel: str, caption: str, title: str) -> str:
    return (
        f'<figure><img src="{_e(_href(rel))}" alt="{_e(caption)}" title="{_e(title)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        payload = layout.read_json(path, default={})
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("report.manifest_unreadable", path=str(path), error=str(exc))
        return {}
    return payload if isinstance(payload, dict) else {}


def _scores_title(item: Mapping[str, Any]) -> str:
    scores = item.get("scores") or {}
    parts = [f"{k} {float(v):.2f}" for k, v in sorted(scores.items())]
    return f"face {item.get('face_id')} · {item.get('source', '')} · " + ", ".join(parts)


def _faceset_card(name: str, entry: Mapping[str, Any], detail: Mapping[str, Any]) -> str:
    counts = entry.get("counts") or detail.get("counts") or {}
    quality = float(entry.get("mean_quality", detail.get("mean_quality", 0.0)) or 0.0)
    crops = [c for c in detail.get("crops", []) if c.get("in_top")]
    if not crops:  # no per-faceset manifest: fall back to the list in the top-level entry
        crops = [{"file": rel, "rank": i} for i, rel in enumerate(entry.get("top", []), 1)]
    figures = "".join(
        _img(c["file"], f"#{c.get('rank')} · {float(c.get('composite', 0)):.2f}", _scores_title(c))
        for c in crops
        if c.get("file")
    )
    links = " ".join(
        f'<a href="{_e(_href(rel))}">{_e(Path(rel).name)}</a>'
        for rel in (entry.get("fsz_top"), entry.get("fsz_all"))
        if rel
    )
    dropped = counts.get("dropped") or {}
    dropped_text = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "none"
    sources = "".join(f"<li>{_e(s)}</li>" for s in entry.get("sources", []))
    skipped = entry.get("skipped") or []
    return (
        f'<section class="card" data-faceset="{_e(name)}">'
        f"<h3>{_e(name)}</h3>"
        '<div class="meta">'
        f"<span>{_e(counts.get('kept', 0))} crops of {_e(counts.get('faces', 0))} faces</span>"
        f"<span>top {_e(counts.get('top', 0))}</span>"
        f'<span>mean quality {quality:.2f}<span class="bar"><i style="width:'
        f'{max(0.0, min(1.0, quality)) * 100:.0f}%"></i></span></span>'
        f"<span>re-cropped {_e(counts.get('recropped', 0))}</span>"
        f"<span>dropped: {_e(dropped_text)}</span>"
        + (f"<span class='reason'>{len(skipped)} unreadable sources</span>" if skipped else "")
        + f"<span>{links or '<span class=none>no .fsz</span>'}</span>"
        "</div>"
        f'<div class="sheet">{figures or "<p class=none>no crops</p>"}</div>'
        f'<ul class="sources">{sources}</ul>'
        "</section>"
    )


def _candidates(section: Mapping[str, Any]) -> str:
    items = section.get("items") or []
    figures = "".join(
        _img(
            item["file"],
            f"→ {item.get('nearest')} · d {float(item.get('distance', 0)):.2f}",
            _scores_title(item),
        )
        for item in items
        if item.get("file")
    )
    body = f'<div class="sheet">{figures}</div>' if figures else '<p class="none">none</p>'
    return (
        f'<section class="card" data-section="candidates"><h3>candidates: {len(items)}</h3>'
        f"{body}</section>"
    )


def _dropped(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    figures: list[str] = []
    listed: list[str] = []
    for name, item in rows:
        caption = f"{name} · {item.get('reason')}"
        title = f"{item.get('detail', '')} · {_scores_title(item)}"
        if item.get("thumbnail"):
            figures.append(_img(item["thumbnail"], caption, title))
        else:
            listed.append(
                f"<li><span class='reason'>{_e(item.get('reason'))}</span> {_e(name)} "
                f"face {_e(item.get('face_id'))}: {_e(item.get('source', ''))} "
                f"({_e(item.get('detail', ''))})</li>"
            )
    sheet = f'<div class="sheet">{"".join(figures)}</div>' if figures else ""
    text = f"<ul>{''.join(listed)}</ul>" if listed else ""
    body = sheet + text or '<p class="none">none</p>'
    count = len(figures) + len(listed)
    return (
        f'<section class="card" data-section="dropped"><h3>dropped faces: {count}</h3>'
        f"{body}</section>"
    )


def _gates(gates: Mapping[str, Any], empty: bool) -> str:
    """Faces each gate removed (facesets.common.gates); headed as the explanation of an
    empty result when nothing reached a faceset."""
    table_rows = "".join(
        f"<tr><td>{_e(label)}</td><td class=n>{count}</td><td>{_e(why)}</td></tr>"
        for label, count, why in gate_text.rows(gates)
    )
    table = (
        f"<p>{_e(gate_text.headline(gates))}</p><table class=gates>{table_rows}<tr><td>kept"
        f"</td><td class=n>{_e(gates.get('kept', 0))}</td><td>in facesets</td></tr></table>"
        + "".join(f"<p>{_e(line)}</p>" for line in gate_text.notes(gates))
        if gates
        else "<p class=none>this export records no per-gate counts</p>"
    )
    if empty:
        return (
            '<section class="card empty" data-section="empty"><h2>No faceset</h2>'
            f"<p>No faceset passed the gates. Faces removed, gate by gate:</p>{table}</section>"
        )
    return f'<section class="card" data-section="gates"><h3>gates</h3>{table}</section>'


def render_report(out: Path) -> str:
    """The review page of the export in `out`, as HTML text."""
    out = Path(out)
    top = _read(out / layout.EXPORT_MANIFEST)
    facesets: Mapping[str, Any] = top.get("facesets") or {}
    if "facesets" not in top:
        raise ReportError(f"no export manifest in {out}")
    details = {
        name: _read(out / (entry.get("manifest") or f"{name}/{layout.FACESET_MANIFEST}"))
        for name, entry in facesets.items()
    }
    cards = "".join(_faceset_card(n, facesets[n], details[n]) for n in sorted(facesets))
    dropped_rows = [
        (name, item) for name in sorted(details) for item in details[name].get("dropped", [])
    ]
    kept = sum(int((e.get("counts") or {}).get("kept", 0)) for e in facesets.values())
    candidates = top.get("candidates")
    empty = not facesets or kept == 0
    gates_card = _gates(top.get("gates") or {}, empty)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>facesets export · {_e(out.name)}</title><style>{CSS}</style>"
        f"<script>{SCRIPT}</script></head><body>"
        f"<h1>facesets export</h1><div class='totals'>{_e(out)} · {len(facesets)} facesets · "
        f"{kept} crops · {len(dropped_rows)} dropped</div>"
        + (gates_card if empty else "")
        + f"<h2>Facesets</h2>{cards or '<p class=none>none</p>'}"
        + (f"<h2>Candidates</h2>{_candidates(candidates)}" if candidates else "")
        + f"<h2>Rejected and dropped</h2>{'' if empty else gates_card}{_dropped(dropped_rows)}"
        "</body></html>\n"
    )


def write_report(out: Path) -> Path:
    """Write OUT/report/index.html from the export manifests and return its path."""
    out = Path(out).absolute()
    page = render_report(out)
    path = out / layout.REPORT_DIR / layout.REPORT_INDEX
    layout.atomic_write_bytes(path, page.encode("utf-8"))
    log.info("report.written", path=str(path))
    return path
