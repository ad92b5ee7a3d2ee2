"""HTML pieces shared by the report's pages: escaping, links relative to a page, figures."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from facesets.common import settings
from facesets.common.beneath import is_relative
from facesets.contract import layout
from facesets.export.report.assets import CHECK_SCRIPT, CSS


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Links:
    """Relative links from one page of the report (its path inside OUT/report) to the rest."""

    page: str  # e.g. "index.html" or "sets/facesets/faceset_001.html"
    thumbs: Mapping[str, str]  # crop (relative to OUT) → thumbnail file name

    @cached_property  # once per page: every figure's links start with it
    def _up(self) -> str:
        return "../" * (len(PurePosixPath(self.page).parts) - 1)

    def report(self, rel: str) -> str:
        """Link to OUT/report/<rel>."""
        return self._up + quote(rel, safe="/")

    def export(self, rel: str) -> str | None:
        """Link to OUT/<rel>; None when `rel` (read from a manifest anyone who can write the
        export may edit) names no path inside OUT: a page never links out of its export."""
        if not is_relative(rel):
            return None
        return self._up + "../" + quote(rel, safe="/")

    def thumb(self, rel: str) -> str | None:
        name = self.thumbs.get(rel)
        return self.report(f"{layout.REPORT_THUMBS_DIR}/{name}") if name else None


def figure(links: Links, rel: str, caption: str, title: str, css_class: str = "") -> str:
    """A thumbnail (lazy) linking to the full image; the full image itself when no thumbnail
    could be made, so a missing crop shows as a broken image rather than disappearing; one whose
    name points out of the export shows neither image nor link."""
    full = links.export(rel)
    thumb = links.thumb(rel)
    classes = " ".join(c for c in (css_class, "" if thumb else "missing") if c)
    size = settings.export().report.thumb_size
    attr = f' class="{e(classes)}"' if classes else ""
    src = thumb or full
    source = f' src="{e(src)}"' if src else ""
    image = (
        f'<img{source} loading="lazy" decoding="async" width="{size}" height="{size}" '
        f'alt="{e(caption)}" title="{e(title)}">'
    )
    linked = f'<a href="{e(full)}">{image}</a>' if full else image
    return f"<figure{attr}>{linked}<figcaption>{e(caption)}</figcaption></figure>"


def quality_bar(quality: float) -> str:
    return (
        f'<span>mean quality {quality:.2f}<span class="bar"><i style="width:'
        f'{max(0.0, min(1.0, quality)) * 100:.0f}%"></i></span></span>'
    )


def flag_badges(flags: Iterable[str]) -> str:
    return "".join(f'<span class="flag {e(f)}">{e(f)}</span>' for f in flags)


def page(title: str, body: str, scripts: str = "") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style>"
        f"<script>{CHECK_SCRIPT}</script></head><body>{body}"
        + (f"<script>{scripts}</script>" if scripts else "")
        + "</body></html>\n"
    )
