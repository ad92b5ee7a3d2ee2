"""Faces linked into tracks within one shot, by box overlap and embedding similarity.

A face joins the track whose last box it overlaps (IoU) when it also looks like that track's
face, or, without overlap, when it looks very much like it (a face that moved fast or was
missed for a frame). A different person stepping into the same place overlaps but does not
look alike, so a switch mid-shot starts a new track.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facesets.common.vectors import iou, unit_mean


@dataclass(frozen=True)
class FaceObs:
    frame: int
    time_s: float
    bbox: tuple[float, float, float, float]  # source pixels
    det_score: float
    yaw: float
    face_short: float
    embedding: np.ndarray  # unit length


@dataclass
class Track:
    shot: int
    faces: list[FaceObs] = field(default_factory=list)

    @property
    def mean_embedding(self) -> np.ndarray:
        return unit_mean(np.stack([f.embedding for f in self.faces]))


def link_tracks(
    shot: int,
    frames: list[list[FaceObs]],
    min_iou: float,
    min_similarity: float,
    reid_similarity: float,
) -> list[Track]:
    """Tracks of one shot from its sampled frames' faces (frames in time order)."""
    tracks: list[Track] = []
    for faces in frames:
        pairs: list[tuple[float, int, int]] = []
        for fi, face in enumerate(faces):
            for ti, track in enumerate(tracks):
                last = track.faces[-1]
                if last.frame >= face.frame:
                    continue
                overlap = iou(last.bbox, face.bbox)
                similarity = float(np.dot(track.mean_embedding, face.embedding))
                if (overlap >= min_iou and similarity >= min_similarity) or (
                    similarity >= reid_similarity
                ):
                    pairs.append((overlap + similarity, fi, ti))
        used_faces: set[int] = set()
        used_tracks: set[int] = set()
        for _, fi, ti in sorted(pairs, reverse=True):
            if fi in used_faces or ti in used_tracks:
                continue
            tracks[ti].faces.append(faces[fi])
            used_faces.add(fi)
            used_tracks.add(ti)
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                tracks.append(Track(shot, [face]))
    return tracks
