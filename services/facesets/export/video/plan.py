"""`facesets video plan`: from a folder of videos to OUT/plan.json, resumable per frame.

Per video: one decode pass (`decode.py`) finds the shots (PySceneDetect) while the sampled
frames stream to the inference service (faces, poses and embeddings back; frames never touch
the disk), each result appended to the video's frame log as it arrives; then tracks, the
quality gate and the kept segments. A video whose frame log is complete is planned again
without decoding or inference.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scenedetect
import structlog

from facesets.client.files import inside, is_utf8
from facesets.client.inference import ImageInput
from facesets.common import settings
from facesets.common.progress import ProgressFn
from facesets.common.roots import open_regular
from facesets.common.vectors import unit_mean
from facesets.contract import layout
from facesets.contract.manifests import PlannedSegment, PlannedVideo, PlanShot, VideoPlan
from facesets.contract.video import VideoPlanParams
from facesets.export.video import frames as frame_io
from facesets.export.video.clips import set_aside_stale
from facesets.export.video.decode import DecodePass
from facesets.export.video.framelog import (
    FaceJson,
    FrameLog,
    FrameRow,
    face_from_json,
    face_to_json,
)
from facesets.export.video.probe import VideoError, media_facts
from facesets.export.video.segments import (
    Segment,
    kept,
    merge_same_face,
    passes,
    quality,
    track_segments,
)
from facesets.export.video.shots import Shot, ShotDetector
from facesets.export.video.tracks import FaceObs, link_tracks
from facesets.v1 import common_pb2

log = structlog.get_logger(__name__)

# Images in, one result per image out (any order): the inference service's Embed.
InferFn = Callable[[Iterable[ImageInput]], Iterator[common_pb2.ImageResult]]


def _links_out(folder: Path, paths: list[Path]) -> list[Path]:
    """The links among `paths` that lead out of `folder`: never read (the folder is what the
    roots allowed; a link there may point anywhere)."""
    return [p for p in paths if p.is_symlink() and not inside(p, folder)]


@dataclass
class FoundVideos:
    """The videos under SRC (links to folders are not followed), and what was left unread:
    links to files out of SRC, and names that are not UTF-8."""

    videos: list[Path]
    links_out: list[Path]
    not_utf8: list[Path]
    unreadable: list[Path] = field(default_factory=list)  # folders that cannot be listed


def find_videos(src: Path) -> FoundVideos:
    """A folder below SRC that facesets wrote (it holds the writer lock: the OUT of an earlier
    plan kept among the videos) is not walked: its clips would be planned as new videos."""
    if src.is_file():
        return FoundVideos([src], [], [])
    extensions = settings.export().video.extensions
    named: list[Path] = []
    unreadable: list[Path] = []  # os.walk would leave them out without a word
    for folder, dirs, files in os.walk(
        src, onerror=lambda error: unreadable.append(Path(error.filename or src)), followlinks=False
    ):
        dirs[:] = sorted(
            d for d in dirs if not os.path.lexists(os.path.join(folder, d, layout.WRITER_LOCK))
        )
        named += [Path(folder, f) for f in files if Path(f).suffix.lower() in extensions]
    named.sort()
    # Names that are not UTF-8 are not read: OpenCV crashes the process on them.
    not_utf8 = [p for p in named if not is_utf8(str(p))]
    named = [p for p in named if is_utf8(str(p))]
    out = _links_out(src, named)
    leading_out = set(out)
    videos = [p for p in named if p.is_file() and p not in leading_out]
    return FoundVideos(videos, out, not_utf8, sorted(unreadable))


def video_name(src: Path, video: Path) -> str:
    """The clip folder's name: the path under SRC, flattened, without its extension."""
    relative = video.relative_to(src) if src.is_dir() else Path(video.name)
    return "__".join(relative.with_suffix("").parts)


def segment_id(source: Path, shot: int, tracks: list[int], start_s: float, end_s: float) -> str:
    """Stable across re-plans; the tracks tell apart two faces over the same span of a shot."""
    tracked = "+".join(str(t) for t in tracks)
    key = f"{source}|{shot}|{tracked}|{start_s:.3f}|{end_s:.3f}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def faces_of(
    result: common_pb2.ImageResult, frame: int, time_s: float, scale: float
) -> list[FaceJson]:
    rows: list[FaceJson] = []
    for face in result.faces:
        if not face.embedding:
            continue
        obs = FaceObs(
            frame=frame,
            time_s=time_s,
            bbox=tuple(v * scale for v in face.bbox),  # type: ignore[arg-type]  # four values
            det_score=face.det_score,
            yaw=face.pose.yaw if face.HasField("pose") else 0.0,
            face_short=face.face_short * scale,
            embedding=np.frombuffer(face.embedding, "<f4"),
        )
        rows.append(face_to_json(obs))
    return rows


@dataclass
class VideoOutcome:
    name: str
    source: str
    duration_s: float = 0.0
    fps: float = 0.0
    shots: list[PlanShot] = field(default_factory=list)
    sampled_frames: int = 0
    inferred_frames: int = 0  # sent to the inference service in this run
    reused_frames: int = 0  # read back from the frame log
    frame_errors: int = 0
    faces: int = 0
    tracks: int = 0
    segments: list[PlannedSegment] = field(default_factory=list)
    dropped_segments: int = 0
    error: str = ""

    def planned(self) -> PlannedVideo:
        """The video as plan.json lists it (its segments are listed apart)."""
        return PlannedVideo(
            name=self.name,
            source=self.source,
            duration_s=self.duration_s,
            fps=self.fps,
            shots=self.shots,
            sampled_frames=self.sampled_frames,
            inferred_frames=self.inferred_frames,
            reused_frames=self.reused_frames,
            frame_errors=self.frame_errors,
            faces=self.faces,
            tracks=self.tracks,
            dropped_segments=self.dropped_segments,
            error=self.error,
        )


class VideoPlanner:
    def __init__(
        self,
        out: Path,
        params: VideoPlanParams,
        infer: InferFn,
        progress: ProgressFn,
        centroid: np.ndarray | None = None,
    ) -> None:
        self.out = out
        self.params = params
        self.infer = infer
        self.progress = progress
        self.centroid = centroid
        self.frames_done = 0
        self.frames_total = 0
        self.stream_frames = 0  # of the video being planned
        self.stream_fps = 0.0

    def plan(self, video: Path, name: str) -> VideoOutcome:
        outcome = VideoOutcome(name=name, source=str(video))
        try:
            self._plan(video, outcome)
        except VideoError as error:
            outcome.error = str(error)
            log.warning("video skipped", video=str(video), reason=str(error))
        return outcome

    def _plan(self, video: Path, outcome: VideoOutcome) -> None:
        p = self.params
        facts = media_facts(video)
        if not facts.has_video:
            raise VideoError("no video stream")
        stream = frame_io.open_stream(video)
        stat = video.stat()
        identity: dict[str, int | str] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "path": str(video),
        }
        key = f"{outcome.name}.{hashlib.sha1(str(video).encode()).hexdigest()[:8]}"
        frame_log = FrameLog(self.out / layout.VIDEO_FRAMES_DIR / f"{key}.jsonl", identity)
        detection = {"threshold": p.shot_threshold, "min_shot_s": p.min_shot_s}
        if frame_log.header is None or frame_log.header.get("detection") != detection:
            frame_log.start({"detection": detection, "fps": stream.fps})
        outcome.duration_s = facts.duration_s or stream.frame_count / stream.fps
        outcome.fps = stream.fps
        grid = frame_io.sample_grid(stream.frame_count, stream.fps, p.sample_fps)
        todo = [frame for frame in grid if frame not in frame_log.frames]
        outcome.sampled_frames = len(grid)
        outcome.reused_frames = len(grid) - len(todo)
        self.frames_total += len(grid)
        self.frames_done += outcome.reused_frames
        self.progress("plan: sampled frames", self.frames_done, self.frames_total)
        if todo or frame_log.shots is None:
            self._decode(video, stream, grid, set(todo), frame_log, outcome)
        assert frame_log.shots is not None  # the pass sets them or raises
        shots = frame_log.shots
        outcome.shots = [
            PlanShot(s.index, s.start_frame, s.end_frame, s.start_s, s.end_s) for s in shots
        ]
        samples = frame_io.samples_in_shots(grid, shots, stream.fps)
        self._segments(video, shots, samples, frame_log, outcome)

    def _decode(
        self,
        video: Path,
        stream: frame_io.VideoStream,
        grid: list[int],
        wanted: set[int],
        frame_log: FrameLog,
        outcome: VideoOutcome,
    ) -> None:
        """One decode pass: the shots, and inference on the wanted sampled frames."""
        p = self.params
        detector = ShotDetector(stream.fps, p.shot_threshold, p.min_shot_s)
        decoding = DecodePass(
            video, stream, p.sample_fps, settings.export().video.send_max_side, detector
        )
        failure: list[VideoError] = []

        detect_size = frame_io.detect_size(max(decoding.sent), decoding.scale, p.min_face_short)

        def requests() -> Iterator[ImageInput]:
            try:
                for frame, image in decoding.frames(grid, wanted):
                    data = frame_io.encode_for_inference(
                        image, settings.export().video.jpeg_quality
                    )
                    yield ImageInput(str(frame), data=data, detect_size=detect_size)
            except VideoError as error:  # frames up to here still count; the reason is kept
                failure.append(error)

        if not wanted:  # every frame is logged: the pass only finds the shots
            for _ in requests():
                pass
            results: Iterable[common_pb2.ImageResult] = ()
        else:
            results = self.infer(requests())
        for result in results:
            frame = int(result.id)
            row = FrameRow(frame, frame / stream.fps)
            if result.error.reason:
                row.error = result.error.message or common_pb2.ErrorReason.Name(result.error.reason)
                outcome.frame_errors += 1
            else:
                row.faces = faces_of(result, frame, frame / stream.fps, decoding.scale)
            frame_log.append(row)
            outcome.inferred_frames += 1
            self.frames_done += 1
            self.progress("plan: sampled frames", self.frames_done, self.frames_total)
        if failure:
            raise failure[0]
        frame_log.set_shots(detector.shots(stream.frame_count))

    def _segments(
        self,
        video: Path,
        shots: list[Shot],
        samples: list[frame_io.Sample],
        frame_log: FrameLog,
        outcome: VideoOutcome,
    ) -> None:
        p = self.params
        by_shot: dict[int, list[list[FaceObs]]] = {s.index: [] for s in shots}
        for sample in samples:
            row = frame_log.frames.get(sample.frame)
            faces = (
                [face_from_json(f, sample.frame, sample.time_s) for f in row.faces] if row else []
            )
            outcome.faces += len(faces)
            by_shot[sample.shot].append(faces)
        candidates: list[Segment] = []
        track_id = 0
        for shot in shots:
            tracks = link_tracks(
                shot.index,
                by_shot[shot.index],
                p.track_min_iou,
                p.track_min_similarity,
                settings.export().video.track_reid_similarity,
            )
            for track in tracks:
                if self.centroid is not None:
                    distance = 1.0 - float(np.dot(track.mean_embedding, self.centroid))
                    if distance > p.match_threshold:
                        track_id += 1
                        continue
                candidates += track_segments(track, track_id, (shot.start_s, shot.end_s), p)
                track_id += 1
        outcome.tracks = track_id
        merged = merge_same_face(
            candidates, settings.export().video.same_face_similarity, p.merge_gap_s, p.max_segment_s
        )
        for segment in merged:
            if kept(segment, p) is not None:
                outcome.dropped_segments += 1
                continue
            mean = segment.mean_embedding
            outcome.segments.append(
                PlannedSegment(
                    id=segment_id(
                        video, segment.shot, segment.tracks, segment.start_s, segment.end_s
                    ),
                    source=str(video),
                    name=outcome.name,
                    shot=segment.shot,
                    tracks=segment.tracks,
                    requested_start_s=round(segment.start_s, 3),
                    requested_end_s=round(segment.end_s, 3),
                    frames=len(segment.faces),
                    pass_rate=round(segment.pass_rate, 3),
                    mean_quality=round(
                        float(np.mean([quality(f, p) for f in segment.faces if passes(f, p)])), 3
                    ),
                    match_distance=None
                    if self.centroid is None
                    else round(1.0 - float(np.dot(mean, self.centroid)), 4),
                )
            )


def match_centroid(images: list[Path], infer: InferFn) -> np.ndarray:
    """The unit mean of the largest face's embedding in each image of a faceset folder."""
    embeddings = []

    def read(path: Path) -> bytes:
        with open_regular(path) as handle:  # a FIFO swapped in is refused, never waited on
            return handle.read()

    requests = (ImageInput(str(i), data=read(path)) for i, path in enumerate(images))
    for result in infer(requests):
        faces = [f for f in result.faces if f.embedding]
        if faces:
            face = max(faces, key=lambda f: f.face_short)
            embeddings.append(np.frombuffer(face.embedding, "<f4"))
    if not embeddings:
        raise ValueError("no face found in the --match faceset's images")
    return unit_mean(np.stack(embeddings))


def faceset_images(folder: Path) -> list[Path]:
    """The images of a --match faceset folder: regular files inside it (a link out of the
    folder, a FIFO or a device named like an image is left unread)."""
    suffixes = {".png", ".jpg", ".jpeg", ".webp"}
    named = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and is_utf8(str(p)))
    out = _links_out(folder, named)
    images = [p for p in named if p not in out and p.is_file()]
    if not images:
        raise ValueError(f"no images in the --match faceset {folder}")
    return images


def plan_videos(
    src: Path,
    out: Path,
    params: VideoPlanParams,
    infer: InferFn,
    progress: ProgressFn,
    match_dir: Path | None = None,
) -> dict[str, object]:
    """Plan every video under SRC into OUT/plan.json; a bad video is reported, the rest go on."""
    if not src.exists():
        raise FileNotFoundError(f"no videos at {src}")
    if not is_utf8(str(src)):
        raise ValueError(f"the path of {ascii(str(src))} is not valid UTF-8; rename its folders")
    found = find_videos(src)
    videos, links_out = found.videos, found.links_out
    for link in links_out:
        log.warning("video.link_out_of_folder", path=str(link))
    for folder in found.unreadable:
        log.warning("video.unreadable_folder", path=str(folder))
    centroid = match_centroid(faceset_images(match_dir), infer) if match_dir else None
    planner = VideoPlanner(out, params, infer, progress, centroid)
    outcomes = []
    for i, video in enumerate(videos):
        progress("plan: videos", i, len(videos))
        outcomes.append(planner.plan(video, video_name(src, video)))
    progress("plan: videos", len(videos), len(videos))
    previous = VideoPlan.read(out / layout.VIDEO_PLAN) or VideoPlan()
    cuts = {s.id: s.cut for s in previous.segments if s.cut}
    segments = [s for o in outcomes for s in o.segments]
    for segment in segments:
        if segment.id in cuts:  # what an earlier `cut` did, kept with the same segment
            segment.cut = cuts[segment.id]
    plan = VideoPlan(
        src=str(src),
        match_dir=str(match_dir) if match_dir else None,
        params=params.recorded(),
        scenedetect=scenedetect.__version__,
        videos=[o.planned() for o in outcomes],
        segments=segments,
    )
    plan.write(out / layout.VIDEO_PLAN)
    set_aside = set_aside_stale(out, plan, previous)
    errors = {o.name: o.error for o in outcomes if o.error}
    return {
        "videos": len(videos),
        "planned_videos": len(videos) - len(errors),
        # Links to videos out of SRC, left unread (SRC is the folder the roots allowed).
        "links_out_of_folder": [str(p.relative_to(src)) for p in links_out],
        # Folders under SRC that cannot be listed (no permission): their videos are left out.
        "unreadable_folders": [str(p.relative_to(src)) for p in found.unreadable],
        # Videos whose names are not UTF-8 (rename them, e.g. `convmv -f latin1 -t utf8`),
        # their bytes escaped: caf\xe9.mp4.
        "names_not_utf8": [
            os.fsencode(p.relative_to(src)).decode("ascii", "backslashreplace")
            for p in found.not_utf8
        ],
        "errors": errors,
        "shots": sum(len(o.shots) for o in outcomes),
        "sampled_frames": sum(o.sampled_frames for o in outcomes),
        "inferred_frames": sum(o.inferred_frames for o in outcomes),
        "reused_frames": sum(o.reused_frames for o in outcomes),
        "faces": sum(o.faces for o in outcomes),
        "tracks": sum(o.tracks for o in outcomes),
        "segments": len(segments),
        "dropped_segments": sum(o.dropped_segments for o in outcomes),
        "video_seconds": round(sum(o.duration_s for o in outcomes if not o.error), 2),
        "plan": str(out / layout.VIDEO_PLAN),
        "set_aside_clips": set_aside,  # clips of an earlier plan, moved out of the clip folders
    }
