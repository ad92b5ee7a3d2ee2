"""The report's list of disagreements between facesets and the user's Immich people (the export
manifest's `immich_disagreements`): what each one says, and its strip of faces side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape as e
from typing import Any

from facesets.contract.immich import KINDS, describe
from facesets.export.report.markup import Links


def section(links: Links, items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return '<p class="none">Immich and facesets agree</p>'
    rows = []
    for item in items:
        strip = item.get("file")
        href = links.export(strip) if isinstance(strip, str) else None
        image = (
            f'<a href="{e(href)}"><img src="{e(href)}" loading="lazy" '
            f'alt="{e(describe(item))}"></a>'
            if href
            else ""
        )
        title = KINDS.get(str(item.get("kind")), "")
        rows.append(
            f'<li data-kind="{e(str(item.get("kind", "")))}"><p title="{e(title)}">'
            f"{e(describe(item))}</p>{image}</li>"
        )
    return (
        '<section class="card" data-section="immich"><p>faces in question on the left, the '
        "faces they are compared with on the right</p>"
        f'<ul class="immich">{"".join(rows)}</ul></section>'
    )
