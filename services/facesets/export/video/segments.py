"""The quality gate per sampled face, and the track segments it keeps.

A segment covers a track from its first sampled frame to one sample interval past its last
(clipped to the shot). It is kept when enough of its frames pass the gate and its length is in
range; a longer track is split into pieces of at most the longest length. Segments of the same
face within one shot closer than the merge gap become one (a track broken by a missed frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesets.common.vectors import unit_mean
from facesets.contract.video import VideoPlanParams
from facesets.export.video.tracks import FaceObs, Track


def passes(face: FaceObs, params: VideoPlanParams) -> bool:
    return (
        abs(face.yaw) <= params.max_yaw
        and face.face_short >= params.min_face_short
        and face.det_score >= params.min_det_score
    )


def quality(face: FaceObs, params: VideoPlanParams) -> float:
    """0..1: detector score, frontality and size together."""
    frontal = max(0.0, 1.0 - abs(face.yaw) / 90.0)
    size = min(1.0, face.face_short / max(1.0, 2 * params.min_face_short))
    return float(face.det_score * (0.5 * frontal + 0.5 * size))


@dataclass
class Segment:
    shot: int
    tracks: list[int]
    start_s: float
    end_s: float
    faces: list[FaceObs]
    passed: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def pass_rate(self) -> float:
        return self.passed / max(1, len(self.faces))

    @property
    def mean_embedding(self) -> np.ndarray:
        return unit_mean(np.stack([f.embedding for f in self.faces]))


def track_segments(
    track: Track, track_id: int, shot: tuple[float, float], params: VideoPlanParams
) -> list[Segment]:
    """A track's segments: each sampled face stands for the interval up to the next sample,
    and a face at a shot's first sample stands for the time since the cut too."""
    shot_start_s, shot_end_s = shot
    step = 1.0 / params.sample_fps

    def begins(face: FaceObs) -> float:
        return shot_start_s if face.time_s - step < shot_start_s else face.time_s

    pieces: list[list[FaceObs]] = [[]]
    for face in track.faces:
        if pieces[-1] and face.time_s + step - begins(pieces[-1][0]) > params.max_segment_s:
            pieces.append([])
        pieces[-1].append(face)
    return [
        Segment(
            track.shot,
            [track_id],
            begins(faces[0]),
            min(shot_end_s, faces[-1].time_s + step),
            faces,
            sum(passes(f, params) for f in faces),
        )
        for faces in pieces
    ]


def merge_same_face(
    segments: list[Segment], same_face_similarity: float, gap_s: float, max_s: float
) -> list[Segment]:
    """Merge segments of one shot that show the same face and lie closer than gap_s (as long
    as the merged segment stays within max_s)."""
    merged: list[Segment] = []
    for segment in sorted(segments, key=lambda s: (s.shot, s.start_s)):
        for other in merged:
            if (
                other.shot == segment.shot
                and segment.start_s - other.end_s < gap_s
                and max(other.end_s, segment.end_s) - other.start_s <= max_s
                and float(np.dot(other.mean_embedding, segment.mean_embedding))
                >= same_face_similarity
            ):
                other.end_s = max(other.end_s, segment.end_s)
                other.faces = sorted(other.faces + segment.faces, key=lambda f: f.time_s)
                other.passed += segment.passed
                other.tracks = sorted(set(other.tracks + segment.tracks))
                break
        else:
            merged.append(segment)
    return merged


def kept(segment: Segment, params: VideoPlanParams) -> str | None:
    """None when the segment is kept, else why not."""
    if segment.pass_rate < params.min_pass_rate:
        return f"pass rate {segment.pass_rate:.2f} < {params.min_pass_rate}"
    if segment.duration_s < params.min_segment_s:
        return f"{segment.duration_s:.2f} s < {params.min_segment_s} s"
    if segment.duration_s > params.max_segment_s + 1e-6:
        return f"{segment.duration_s:.2f} s > {params.max_segment_s} s"
    return None
