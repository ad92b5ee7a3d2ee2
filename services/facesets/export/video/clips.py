"""Clips in a video OUT that its current plan does not hold (left by an earlier plan).

A re-plan into the same OUT (another `--match`, other thresholds, fewer videos) moves such
clips and their sidecars to OUT/_superseded/<name>/, so that OUT/<name>/ holds exactly the
current plan's clips; nothing is deleted. `status` lists any that are still in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from facesets.common import layout

# Clips are named by their segment's uuid; nothing else in a clip folder is touched.
CLIP_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RESERVED = {layout.VIDEO_FRAMES_DIR, layout.VIDEO_SET_ASIDE_DIR}


def _clip_folders(out: Path, *plans: dict[str, Any]) -> set[Path]:
    folders = {out / video["name"] for plan in plans for video in plan.get("videos", [])}
    for plan in plans:
        for segment in plan.get("segments", []):
            folders.add(out / segment["name"])
            if segment.get("cut"):
                folders.add(Path(segment["cut"]["clip"]).parent)
    return {f for f in folders if f.name not in RESERVED}


def _stale(folders: set[Path], plan: dict[str, Any]) -> list[Path]:
    """Clips (uuid-named .mp4) in the folders whose id the plan does not hold."""
    current = {s["id"] for s in plan.get("segments", [])}
    return sorted(
        clip
        for folder in folders
        if folder.is_dir()
        for clip in folder.glob("*.mp4")
        if CLIP_NAME.match(clip.stem) and clip.stem not in current
    )


def set_aside_stale(out: Path, plan: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """Move the clips (and sidecars) that the new plan no longer holds out of the clip folders;
    the paths they now have."""
    moved = []
    for clip in _stale(_clip_folders(out, plan, previous), plan):
        target = out / layout.VIDEO_SET_ASIDE_DIR / clip.parent.name
        target.mkdir(parents=True, exist_ok=True)
        sidecar = clip.with_suffix(".json")
        if sidecar.exists():
            os.replace(sidecar, target / sidecar.name)
        os.replace(clip, target / clip.name)  # a clip set aside before is replaced by this one
        moved.append(str(target / clip.name))
    return moved


def unplanned_clips(out: Path, plan: dict[str, Any]) -> list[str]:
    """Clips in OUT's clip folders that the plan does not hold."""
    folders = _clip_folders(out, plan)
    if out.is_dir():
        folders |= {d for d in out.iterdir() if d.is_dir() and d.name not in RESERVED}
    return [str(clip) for clip in _stale(folders, plan)]
