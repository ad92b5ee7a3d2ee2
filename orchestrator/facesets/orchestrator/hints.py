"""What a user stuck on an empty or refused result needs to hear next: the command to run
first, or where the photos must be."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

from facesets.contract import layout


def no_store(store: Path, dry_run: bool = False) -> str:
    """The message for a command given a face store that does not exist (or a folder)."""
    if store.is_dir():
        return (
            f"{store} is a folder, not a facesets store; name the store file in it, such as "
            f"{store / layout.RUN_STORE} (where `facesets run` keeps it)"
        )
    why = " a dry run plans from what the store holds, and" if dry_run else ""
    return (
        f"no face store at {store}:{why} `facesets embed PHOTOS {store}` makes one from a "
        "folder of photos; run it first"
        + ("; or leave out --dry-run, which embeds the folders first" if dry_run else "")
    )


def require_store(store: Path | None, dry_run: bool = False) -> None:
    """ValueError, saying how to make one, when `store` does not exist (before any service
    starts)."""
    if store is not None and not Path(store).is_file():
        raise ValueError(no_store(Path(store).absolute(), dry_run))


def discover(summary: Mapping[str, object], root: Path, store: Path) -> str:
    """A dry run of discover that found no face under ROOT: the store holds none yet."""
    if not summary.get("dry_run") or summary.get("faces_under_root", 1):
        return ""
    return (
        f"the store holds no face of a photo under {root}: a dry run plans from what {store} "
        f"holds. Run `facesets embed {root} {store}` first, or leave out --dry-run to embed them"
    )


def age_extend(summary: Mapping[str, object], plan_path: Path) -> str:
    """`age extend` found nothing new: it looks under the faceset's source folders alone."""
    if summary.get("dry_run") is None or summary.get("new_faces", 1):
        return ""
    try:
        roots = json.loads(plan_path.read_text(encoding="utf-8")).get("roots", [])
    except (OSError, ValueError):
        roots = []
    where = ", ".join(str(r) for r in roots) or "(the folders its photos came from)"
    return (
        f"no new faces of {summary.get('faceset', 'this faceset')} to slot in. age extend "
        f"looks only under the faceset's source folders: {where}. New photos must be under one "
        "of them and embedded (`facesets embed FOLDER STORE`) before age extend finds them"
    )


def say(hint: str) -> None:
    """A hint on stderr (stdout stays the summary, JSON with --json)."""
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
