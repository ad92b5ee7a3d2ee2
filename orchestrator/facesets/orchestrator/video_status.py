"""`facesets video status`: what a video OUT holds and what remains, read from its files
(plan.json and the clips it names, as contract/layout.py lays them out); no service is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facesets.contract import layout
from facesets.contract.video_outputs import unplanned_clips


def video_status(out: Path) -> dict[str, Any]:
    plan = layout.read_json(out / layout.VIDEO_PLAN)
    if plan is None:
        frame_logs = list((out / layout.VIDEO_FRAMES_DIR).glob("*.jsonl"))
        return {"planned": False, "frame_logs": len(frame_logs), "remains": "plan"}
    per_video: dict[str, dict[str, Any]] = {}
    for video in plan.get("videos", []):
        per_video[video["name"]] = {
            "sampled_frames": video["sampled_frames"],
            "faces": video["faces"],
            "tracks": video["tracks"],
            "planned_segments": 0,
            "cut_segments": 0,
            "error": video["error"],
        }
    for segment in plan.get("segments", []):
        row = per_video.setdefault(segment["name"], {"planned_segments": 0, "cut_segments": 0})
        row["planned_segments"] += 1
        cut = segment.get("cut")
        row["cut_segments"] += bool(cut and Path(cut["clip"]).exists())
    planned = sum(v["planned_segments"] for v in per_video.values())
    cut_count = sum(v["cut_segments"] for v in per_video.values())
    unplanned = unplanned_clips(out, plan)
    remains = [f"{planned - cut_count} segments to cut"] if planned > cut_count else []
    if unplanned:
        remains.append(f"{len(unplanned)} clips not in the plan (from an earlier plan)")
    return {
        "planned": True,
        "videos": per_video,
        "totals": {
            "videos": len(per_video),
            "errors": sum(bool(v.get("error")) for v in per_video.values()),
            "sampled_frames": sum(v.get("sampled_frames", 0) for v in per_video.values()),
            "faces": sum(v.get("faces", 0) for v in per_video.values()),
            "tracks": sum(v.get("tracks", 0) for v in per_video.values()),
            "planned_segments": planned,
            "cut_segments": cut_count,
        },
        "unplanned_clips": unplanned,
        "remains": "; ".join(remains) or "nothing",
    }
