"""Clips in a video OUT and the plan that holds them: which clips a plan no longer holds (left by
an earlier plan). The media service sets such clips aside on a re-plan; `facesets video status`
lists any that are still in place. Clips are named by their segment's uuid.
"""

from __future__ import annotations

import re
from pathlib import Path

from facesets.contract import layout
from facesets.contract.manifests import VideoPlan

# Clips are named by their segment's uuid; nothing else in a clip folder is touched.
CLIP_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RESERVED = {layout.VIDEO_FRAMES_DIR, layout.VIDEO_SET_ASIDE_DIR}


def clip_folders(out: Path, *plans: VideoPlan) -> set[Path]:
    """The clip folders the plans name: folders directly in OUT alone, whatever a plan (which
    anyone who can write OUT may edit) says, and never a link."""
    names = {video.name for plan in plans for video in plan.videos}
    for plan in plans:
        for segment in plan.segments:
            names.add(segment.name)
            if segment.cut and Path(segment.cut.clip).parent.parent == out:
                names.add(Path(segment.cut.clip).parent.name)
    return {
        out / name
        for name in names
        if layout.is_plain_name(name) and name not in RESERVED and not (out / name).is_symlink()
    }


def stale_clips(folders: set[Path], plan: VideoPlan) -> list[Path]:
    """Clips (uuid-named .mp4) in the folders whose id the plan does not hold."""
    current = {s.id for s in plan.segments}
    return sorted(
        clip
        for folder in folders
        if folder.is_dir()
        for clip in folder.glob("*.mp4")
        if CLIP_NAME.match(clip.stem) and clip.stem not in current
    )


def unplanned_clips(out: Path, plan: VideoPlan) -> list[str]:
    """Clips in OUT's clip folders that the plan does not hold."""
    folders = clip_folders(out, plan)
    if out.is_dir():
        folders |= {d for d in out.iterdir() if d.is_dir() and d.name not in RESERVED}
    return [str(clip) for clip in stale_clips(folders, plan)]
