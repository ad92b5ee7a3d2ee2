"""`facesets video status`: what a video OUT holds and what remains, read from its files
(plan.json and the clips it names, as contract/layout.py lays them out); no service is needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facesets.contract import layout
from facesets.contract.manifests import VideoPlan
from facesets.contract.video_outputs import unplanned_clips


@dataclass
class VideoRow:
    """One video's line of the status: what planning found and how many of its segments are
    cut (a segment of a video the plan no longer lists has only the segment counts)."""

    sampled_frames: int | None = None
    faces: int | None = None
    tracks: int | None = None
    error: str | None = None
    planned_segments: int = 0
    cut_segments: int = 0

    def as_json(self) -> dict[str, int | str]:
        known = {
            "sampled_frames": self.sampled_frames,
            "faces": self.faces,
            "tracks": self.tracks,
            "error": self.error,
        }
        counts = {"planned_segments": self.planned_segments, "cut_segments": self.cut_segments}
        return {k: v for k, v in known.items() if v is not None} | counts


def video_status(out: Path) -> dict[str, object]:
    plan = VideoPlan.read(out / layout.VIDEO_PLAN)
    if plan is None:
        frame_logs = list((out / layout.VIDEO_FRAMES_DIR).glob("*.jsonl"))
        return {"planned": False, "frame_logs": len(frame_logs), "remains": "plan"}
    per_video: dict[str, VideoRow] = {}
    for video in plan.videos:
        per_video[video.name] = VideoRow(
            video.sampled_frames, video.faces, video.tracks, video.error
        )
    for segment in plan.segments:
        row = per_video.setdefault(segment.name, VideoRow())
        row.planned_segments += 1
        cut = segment.cut
        row.cut_segments += bool(cut and Path(cut.clip).exists())
    rows = per_video.values()
    planned = sum(v.planned_segments for v in rows)
    cut_count = sum(v.cut_segments for v in rows)
    unplanned = unplanned_clips(out, plan)
    remains = [f"{planned - cut_count} segments to cut"] if planned > cut_count else []
    if unplanned:
        remains.append(f"{len(unplanned)} clips not in the plan (from an earlier plan)")
    return {
        "planned": True,
        "videos": {name: row.as_json() for name, row in per_video.items()},
        "totals": {
            "videos": len(per_video),
            "errors": sum(bool(v.error) for v in rows),
            "sampled_frames": sum(v.sampled_frames or 0 for v in rows),
            "faces": sum(v.faces or 0 for v in rows),
            "tracks": sum(v.tracks or 0 for v in rows),
            "planned_segments": planned,
            "cut_segments": cut_count,
        },
        "unplanned_clips": unplanned,
        "remains": "; ".join(remains) or "nothing",
    }
