"""Putting back what maintenance runs moved: shared by Restore and by Occlusion's undo."""

from __future__ import annotations

from pathlib import Path

from facesets.export.maintenance import restore, review_actions
from facesets.export.maintenance.report_refresh import refresh_report


def restore_runs(
    out: Path,
    *,
    run_id: str | None = None,
    faceset: str | None = None,
    undo_kind: str | None = None,
) -> dict[str, object]:
    """Restore run `run_id` (or the last run of `undo_kind`), or every move of `faceset`."""
    chosen = run_id
    if undo_kind is not None:
        chosen = restore.last_run(out, undo_kind)
        if chosen is None:
            return {"runs": [], "restored": [], "conflicts": [], "note": "nothing to undo"}
    outcome = restore.restore(out, run_id=chosen, faceset=faceset)
    found = {
        "runs": outcome.runs,
        "restored": outcome.restored,
        "conflicts": outcome.conflicts,
    }
    # Only the facesets the restored runs touched get their report pages re-rendered.
    return refresh_report(out, found, review_actions.touched_by(out, outcome.runs))
