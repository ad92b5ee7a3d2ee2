"""`facesets video cut`: every planned segment into OUT/<source name>/<uuid>.mp4 with ffmpeg.

Stream copy (the default) cannot start between keyframes: the clip starts at the last keyframe
at or before the requested start, and the plan records both times. `accurate` re-encodes
(libx264) from the exact requested start instead. A clip is written under a temporary name,
its duration checked with ffprobe, then renamed: a killed ffmpeg leaves only a part file, which
the next run removes and redoes. A clip that exists with the planned duration is not redone.
"""

from __future__ import annotations

import bisect
import subprocess
from pathlib import Path
from typing import Any

import structlog

from facesets.common import settings
from facesets.common.progress import ProgressFn
from facesets.contract import layout
from facesets.contract.video import VideoCutParams
from facesets.export.video.probe import VideoError, clip_duration, keyframes, tools

log = structlog.get_logger(__name__)


def snapped_start(keys: list[float], start_s: float) -> float:
    """The last keyframe at or before start_s (stream copy starts there)."""
    i = bisect.bisect_right(keys, start_s + 1e-3) - 1
    return keys[max(0, i)]


def ffmpeg_command(
    source: Path, target: Path, start_s: float, end_s: float, accurate: bool
) -> list[str]:
    base = [tools().ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if accurate:
        codec = ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(settings.VIDEO_ACCURATE_CRF),
                 "-c:a", "aac"]  # fmt: skip
    else:
        codec = ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    return [
        *base, "-ss", f"{start_s:.3f}", "-i", str(source), "-t", f"{end_s - start_s:.3f}",
        "-map", "0:v:0", "-map", "0:a:0?", *codec, "-f", "mp4", str(target),
    ]  # fmt: skip


def clip_matches(clip: Path, expected_s: float) -> bool:
    duration = clip_duration(clip)
    return duration is not None and abs(duration - expected_s) <= settings.VIDEO_CUT_TOLERANCE_S


def cut_segment(
    segment: dict[str, Any], out: Path, params: VideoCutParams, keys: list[float]
) -> tuple[dict[str, Any], bool]:
    """The segment's cut record, and whether ffmpeg ran for it."""
    source = Path(segment["source"])
    start, end = float(segment["requested_start_s"]), float(segment["requested_end_s"])
    actual_start = start if params.accurate else snapped_start(keys, start)
    folder = out / segment["name"]
    clip = folder / f"{segment['id']}.mp4"
    mode = "accurate" if params.accurate else "copy"
    expected = end - actual_start
    record = {
        "clip": str(clip),
        "mode": mode,
        "requested_start_s": start,
        "requested_end_s": end,
        "actual_start_s": round(actual_start, 3),
        "actual_end_s": round(end, 3),
    }
    previous = segment.get("cut") or {}
    if previous.get("mode") == mode and clip.exists() and clip_matches(clip, expected):
        return {**previous, **record, "duration_s": previous.get("duration_s")}, False
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / layout.VIDEO_CUT_PART.format(segment["id"], ".mp4")
    part.unlink(missing_ok=True)
    done = subprocess.run(
        ffmpeg_command(source, part, actual_start, end, params.accurate),
        capture_output=True,
        text=True,
        check=False,
    )
    duration = clip_duration(part) if done.returncode == 0 else None
    if duration is None or abs(duration - expected) > settings.VIDEO_CUT_TOLERANCE_S:
        part.unlink(missing_ok=True)
        reason = done.stderr.strip().splitlines()[-1:] or [f"duration {duration} != {expected:.3f}"]
        raise VideoError(f"cut failed: {reason[0]}")
    part.replace(clip)
    record["duration_s"] = round(duration, 3)
    return record, True


def cut_segments(out: Path, params: VideoCutParams, progress: ProgressFn) -> dict[str, Any]:
    plan_path = out / layout.VIDEO_PLAN
    plan = layout.read_json(plan_path)
    if plan is None:
        raise FileNotFoundError(f"no plan at {plan_path}; run `facesets video plan` first")
    segments: list[dict[str, Any]] = plan.get("segments", [])
    keys_of: dict[str, list[float]] = {}
    written = skipped = 0
    errors: dict[str, str] = {}
    progress("cut: segments", 0, len(segments))
    for i, segment in enumerate(segments):
        try:
            source = segment["source"]
            if source not in keys_of:
                keys_of[source] = [] if params.accurate else keyframes(Path(source))
            record, ran = cut_segment(segment, out, params, keys_of[source])
        except (VideoError, OSError) as error:
            errors[segment["id"]] = str(error)
            log.warning("cut failed", segment=segment["id"], reason=str(error))
        else:
            segment["cut"] = record
            written += ran
            skipped += not ran
            if params.write_sidecar:
                sidecar = {k: v for k, v in segment.items() if k != "cut"} | {"cut": record}
                layout.atomic_write_json(Path(record["clip"]).with_suffix(".json"), sidecar)
            layout.atomic_write_json(plan_path, plan)  # each finished cut is recorded at once
        progress("cut: segments", i + 1, len(segments))
    t = tools()
    return {
        "segments": len(segments),
        "written": written,
        "already_cut": skipped,
        "errors": errors,
        "mode": "accurate" if params.accurate else "copy",
        "ffmpeg": t.version,
        "plan": str(plan_path),
    }
