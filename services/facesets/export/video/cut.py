"""`facesets video cut`: every planned segment into OUT/<source name>/<uuid>.mp4 with ffmpeg.

Stream copy (the default) cannot start between keyframes: the clip starts at the last keyframe
at or before the requested start, and the plan records both times. No clip holds a frame of
another shot: when that keyframe lies in an earlier shot the clip is re-encoded from its exact
start instead, and a copied clip takes only the packets (in decode order) up to the first one
shown at or after the end, so that B-frames past a cut stay out. `accurate` re-encodes
(libx264) every clip from the exact requested start. A clip is written under a temporary name,
checked (its frame count for a copy, its duration for a re-encode), then renamed: a killed
ffmpeg leaves only a part file, which the next run removes and redoes. A clip that exists and
checks out is not redone.
"""

from __future__ import annotations

import bisect
import os
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from facesets.client.files import inside
from facesets.common import children, settings
from facesets.common.progress import ProgressFn
from facesets.common.roots import PathRefused, Roots
from facesets.contract import layout
from facesets.contract.manifests import ClipCut, PlannedSegment, VideoPlan
from facesets.contract.video import VideoCutParams
from facesets.export.video.probe import Packet, VideoError, clip_duration, tools, video_packets

log = structlog.get_logger(__name__)


EPSILON_S = 1e-3  # plan times are rounded to milliseconds


@dataclass(frozen=True)
class CopySpan:
    start_s: float  # the keyframe the copy starts at
    end_s: float  # where its last frame ends
    frames: int  # video packets copied, in decode order


class PacketIndex:
    """A video's packets in decode order, and its keyframes by time (found by bisection)."""

    def __init__(self, packets: list[Packet]) -> None:
        self.packets = packets
        keys = sorted((p.pts_s, i) for i, p in enumerate(packets) if p.key)
        self.key_times = [t for t, _ in keys]
        self.key_rows = [i for _, i in keys]


def copy_span(
    index: PacketIndex, start_s: float, end_s: float, shot_start_s: float
) -> CopySpan | None:
    """What a stream copy of start_s..end_s holds, or None when it would hold a frame of
    another shot at its head (the last keyframe at or before the start is in an earlier shot)."""
    at = bisect.bisect_right(index.key_times, start_s + EPSILON_S) - 1
    if at < 0 or index.key_times[at] < shot_start_s - EPSILON_S:
        return None
    packets = index.packets
    first = last = index.key_rows[at]
    while last < len(packets) and packets[last].pts_s < end_s - EPSILON_S:
        last += 1  # shown before the end; the first shown at or after it stops the copy
    if last == first:
        return None
    taken = packets[first:last]
    ends = max(p.pts_s + p.duration_s for p in taken)
    return CopySpan(packets[first].pts_s, min(end_s, ends), last - first)


def ffmpeg_command(
    source: Path, target: Path, start_s: float, end_s: float, accurate: bool, frames: int = 0
) -> list[str]:
    base = [tools().ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if accurate:
        crf = str(settings.export().video.accurate_crf)
        codec = ["-c:v", "libx264", "-preset", "veryfast", "-crf", crf, "-c:a", "aac"]
    else:
        codec = ["-c", "copy", "-avoid_negative_ts", "make_zero"]
        if frames:
            codec = ["-frames:v", str(frames), *codec]
    return [
        *base, "-ss", f"{start_s:.3f}", "-i", str(source), "-t", f"{end_s - start_s:.3f}",
        "-map", "0:v:0", "-map", "0:a:0?", *codec, "-f", "mp4", str(target),
    ]  # fmt: skip


def clip_matches(clip: Path, expected_s: float, frames: int | None) -> bool:
    """A copy is checked by its frame count, a re-encode by its duration."""
    if frames:
        try:
            return len(video_packets(clip)) == frames
        except VideoError:
            return False
    duration = clip_duration(clip)
    return (
        duration is not None
        and abs(duration - expected_s) <= settings.export().video.cut_tolerance_s
    )


def cut_segment(
    segment: PlannedSegment,
    out: Path,
    params: VideoCutParams,
    packets: PacketIndex,
    shot_start_s: float,
) -> tuple[ClipCut, bool]:
    """The segment's cut record, and whether ffmpeg ran for it."""
    source = Path(segment.source)
    start, end = segment.requested_start_s, segment.requested_end_s
    span = None if params.accurate else copy_span(packets, start, end, shot_start_s)
    folder = out / segment.name
    clip = folder / f"{segment.id}.mp4"
    mode = "copy" if span else "accurate"
    actual_start, actual_end = (span.start_s, span.end_s) if span else (start, end)
    expected = actual_end - actual_start
    frames = span.frames if span else None
    record = ClipCut(
        clip=str(clip),
        mode=mode,
        requested_start_s=start,
        requested_end_s=end,
        actual_start_s=round(actual_start, 3),
        actual_end_s=round(actual_end, 3),
        frames=frames,
        reencoded=None
        if span or params.accurate
        else "the keyframe before the start lies in an earlier shot",
    )
    previous = segment.cut
    if (
        previous is not None
        and previous.mode == mode
        and previous.frames == frames
        and clip.exists()
        and clip_matches(clip, expected, frames)
    ):
        # what the earlier cut recorded besides (a reason it re-encoded, say) stays
        kept = replace(record, duration_s=previous.duration_s, extra=previous.extra)
        if previous.reencoded is not None and kept.reencoded is None:
            kept.reencoded = previous.reencoded
        return kept, False
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / layout.VIDEO_CUT_PART.format(segment.id, ".mp4")
    part.unlink(missing_ok=True)
    # Tracked: a service told to stop kills it, and the part file goes below.
    done = children.run(ffmpeg_command(source, part, actual_start, end, span is None, frames or 0))
    duration = clip_duration(part) if done.returncode == 0 else None
    if duration is None or not clip_matches(part, expected, frames):
        part.unlink(missing_ok=True)
        reason = done.stderr.strip().splitlines()[-1:] or [
            f"duration {duration} != {expected:.3f}"
            if frames is None
            else f"the clip does not hold the {frames} frames planned"
        ]
        raise VideoError(f"cut failed: {reason[0]}")
    part.replace(clip)
    record.duration_s = round(duration, 3)
    return record, True


def segment_problem(
    segment: PlannedSegment, out: Path, src: str, roots: Roots | None
) -> str | None:
    """Why a segment read from plan.json (which anyone who can write OUT may edit) is not cut:
    a clip folder that is no plain name (`..`, a path: it would write outside OUT), an id that
    is no uuid, or a video outside the plan's SRC or the service's roots. None: it may be cut."""
    if not layout.is_plain_name(segment.name):
        return f"its clip folder {segment.name!r} is not a plain name inside OUT; it was not cut"
    if (out / segment.name).is_symlink():
        return f"its clip folder {out / segment.name} is a symbolic link; it was not cut"
    try:
        plain_id = str(uuid.UUID(segment.id)) == segment.id
    except ValueError:
        plain_id = False
    if not plain_id:
        return f"its id {segment.id!r} is not a segment id (a uuid); it was not cut"
    if not src or not os.path.isabs(segment.source) or not inside(segment.source, src):
        return f"its video {segment.source} is not under the plan's SRC ({src}); it was not cut"
    if roots is not None:
        try:
            roots.check_read(segment.source, "video")
        except PathRefused as error:
            return str(error)
    return None


def cut_segments(
    out: Path, params: VideoCutParams, progress: ProgressFn, roots: Roots | None = None
) -> dict[str, object]:
    plan_path = out / layout.VIDEO_PLAN
    plan = VideoPlan.read(plan_path)
    if plan is None:
        raise FileNotFoundError(f"no plan at {plan_path}; run `facesets video plan` first")
    segments = plan.segments
    packets_of: dict[str, PacketIndex] = {}
    starts = plan.shot_starts()
    written = skipped = reencoded = 0
    errors: dict[str, str] = {}  # segments a re-run may cut (a full disk, ffmpeg failing)
    refused: dict[str, str] = {}  # segments the plan names wrongly: a re-run refuses them again
    progress("cut: segments", 0, len(segments))
    for i, segment in enumerate(segments):
        problem = segment_problem(segment, out, plan.src, roots)
        if problem is not None:
            refused[segment.id] = problem
            log.warning("segment refused", segment=segment.id, reason=problem)
            progress("cut: segments", i + 1, len(segments))
            continue
        try:
            source = segment.source
            if source not in packets_of:
                packets = [] if params.accurate else video_packets(Path(source))
                packets_of[source] = PacketIndex(packets)
            shot_start = starts.get((source, segment.shot), segment.requested_start_s)
            record, ran = cut_segment(segment, out, params, packets_of[source], shot_start)
        except (VideoError, OSError) as error:
            errors[segment.id] = str(error)
            log.warning("cut failed", segment=segment.id, reason=str(error))
        else:
            segment.cut = record
            written += ran
            skipped += not ran
            reencoded += record.reencoded is not None
            if params.write_sidecar:
                sidecar = segment.to_json()
                layout.atomic_write_json(Path(record.clip).with_suffix(".json"), sidecar)
            plan.write(plan_path)  # each finished cut is recorded at once
        progress("cut: segments", i + 1, len(segments))
    t = tools()
    return {
        "segments": len(segments),
        "written": written,
        "already_cut": skipped,
        "reencoded": reencoded,  # copy clips whose head would have held an earlier shot
        "errors": errors,
        "refused": refused,
        "mode": "accurate" if params.accurate else "copy",
        "ffmpeg": t.version,
        "plan": str(plan_path),
    }
