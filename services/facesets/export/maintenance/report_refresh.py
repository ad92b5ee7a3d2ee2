"""A maintenance run that moved files rebuilds the export's review report, if it has one: the
report would otherwise keep listing merged sets and dropped faces until `facesets report`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from facesets.common.beneath import Beneath
from facesets.contract import layout


def refresh_report(
    out: Path, summary: Mapping[str, object], touched: set[str] | None = None
) -> dict[str, object]:
    """`summary` with `report` (what the rebuild wrote) when the run moved anything and OUT
    holds a report/; a dry run or a run that moved nothing leaves the report alone.
    `touched`: the facesets the run changed, whose pages alone are rendered again."""
    found = dict(summary)
    moved = found.get("restored") if "restored" in found else found.get("moves")
    if found.get("dry_run") or not moved or not Beneath(out).is_dir(layout.REPORT_DIR):
        return found
    from facesets.export.report import build_report  # the report pulls in cv2 and the pages

    try:
        found["report"] = build_report(Path(out), touched=touched).summary
    except (ValueError, OSError) as error:  # the run stands; the report says why it is old
        found["report_error"] = f"the report was not rebuilt: {error}"
    return found
