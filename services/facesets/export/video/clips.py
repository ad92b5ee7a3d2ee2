"""Clips in a video OUT that its current plan does not hold (left by an earlier plan).

A re-plan into the same OUT (another `--match`, other thresholds, fewer videos) moves such
clips and their sidecars to OUT/_superseded/<name>/, so that OUT/<name>/ holds exactly the
current plan's clips; nothing is deleted. `status` lists any that are still in place.
"""

from __future__ import annotations

import os
from pathlib import Path

from facesets.contract import layout
from facesets.contract.manifests import VideoPlan
from facesets.contract.video_outputs import clip_folders, stale_clips


def set_aside_stale(out: Path, plan: VideoPlan, previous: VideoPlan) -> list[str]:
    """Move the clips (and sidecars) that the new plan no longer holds out of the clip folders;
    the paths they now have."""
    moved = []
    for clip in stale_clips(clip_folders(out, plan, previous), plan):
        target = out / layout.VIDEO_SET_ASIDE_DIR / clip.parent.name
        target.mkdir(parents=True, exist_ok=True)
        sidecar = clip.with_suffix(".json")
        if sidecar.exists():
            os.replace(sidecar, target / sidecar.name)
        os.replace(clip, target / clip.name)  # a clip set aside before is replaced by this one
        moved.append(str(target / clip.name))
    return moved
