"""The append-only frame log of one video: OUT/_frames/<key>.jsonl.

Its first line says which file it describes (size, mtime) and how shots are detected; each
further line is one sampled frame's inference result, appended and flushed as it arrives, and
the shots follow as one line once the decode pass has seen every frame. A run stopped half-way
leaves at most one broken last line, which is dropped; a log of a file that changed since is
started over.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from facesets.export.video.shots import Shot
from facesets.export.video.tracks import FaceObs

# One face as a frame log line holds it: bbox, score, yaw, short side, embedding (base64).
FaceJson = dict[str, list[float] | float | str]


def face_to_json(face: FaceObs) -> FaceJson:
    return {
        "bbox": [round(v, 2) for v in face.bbox],
        "score": round(face.det_score, 4),
        "yaw": round(face.yaw, 2),
        "short": round(face.face_short, 2),
        "emb": base64.b64encode(np.asarray(face.embedding, "<f4").tobytes()).decode("ascii"),
    }


def _number(row: Mapping[str, object], key: str) -> float:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a frame log face's {key} is not a number: {value!r}")
    return float(value)


def face_from_json(row: Mapping[str, object], frame: int, time_s: float) -> FaceObs:
    bbox, emb = row["bbox"], row["emb"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not isinstance(emb, str):
        raise ValueError(f"a frame log face has no four-value bbox or no embedding: {row!r}")
    x0, y0, x1, y1 = (float(v) for v in bbox)
    return FaceObs(
        frame=frame,
        time_s=time_s,
        bbox=(x0, y0, x1, y1),  # as face_to_json wrote them
        det_score=_number(row, "score"),
        yaw=_number(row, "yaw"),
        face_short=_number(row, "short"),
        embedding=np.frombuffer(base64.b64decode(emb), "<f4"),
    )


@dataclass
class FrameRow:
    """One sampled frame's line: its inference result (faces) or why it has none (error)."""

    frame: int
    t: float
    error: str | None = None
    faces: list[FaceJson] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        row: dict[str, object] = {"frame": self.frame, "t": self.t}
        if self.error is not None:
            row["error"] = self.error
        else:
            row["faces"] = self.faces
        return row

    @classmethod
    def from_json(cls, row: Mapping[str, object]) -> FrameRow:
        frame, t, error, faces = row["frame"], row.get("t", 0.0), row.get("error"), row.get("faces")
        if not isinstance(frame, int) or not isinstance(t, int | float):
            raise ValueError(f"not a frame log line: {row!r}")
        return cls(
            frame,
            float(t),
            error if isinstance(error, str) else None,
            [cast(FaceJson, f) for f in faces if isinstance(f, dict)]
            if isinstance(faces, list)
            else [],
        )


def _shot(raw: object) -> Shot:
    if not isinstance(raw, dict):
        raise ValueError(f"a frame log shot is not an object: {raw!r}")
    return Shot(
        int(raw["index"]),
        int(raw["start_frame"]),
        int(raw["end_frame"]),
        float(raw["start_s"]),
        float(raw["end_s"]),
    )


def _shots(raw: object) -> list[Shot] | None:
    return [_shot(s) for s in raw] if isinstance(raw, list) else None


class FrameLog:
    def __init__(self, path: Path, identity: dict[str, int | str]) -> None:
        self.path = path
        self.identity = identity
        self.header: dict[str, object] | None = None
        self.frames: dict[int, FrameRow] = {}
        self.shots: list[Shot] | None = None  # None until a pass has found them
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
        with self.path.open("rb") as handle:
            for raw in handle:
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("unfinished line")
                    row = json.loads(raw)
                    if not isinstance(row, dict):
                        raise ValueError("not an object")
                    if self.header is None:
                        self.header = row
                        self.shots = _shots(row.get("shots"))  # where earlier versions kept them
                    elif "shots" in row:
                        self.shots = _shots(row["shots"])
                    else:
                        found = FrameRow.from_json(row)
                        self.frames[found.frame] = found
                except (ValueError, KeyError, TypeError):
                    break  # a write cut short by a kill (or a damaged line): the rest is dropped
                good_end += len(raw)
        if self.header is None or self.header.get("identity") != self.identity:
            self.header, self.frames, self.shots = None, {}, None
            self.path.unlink(missing_ok=True)
        elif good_end < self.path.stat().st_size:
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)

    def start(self, header: dict[str, object]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header = {"identity": self.identity, **header}
        self.frames, self.shots = {}, None
        with self.path.open("wb") as handle:
            handle.write(json.dumps(self.header, sort_keys=True).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, row: FrameRow) -> None:
        self._write(row.to_json())
        self.frames[row.frame] = row

    def set_shots(self, shots: list[Shot]) -> None:
        if shots != self.shots:
            self._write({"shots": [s.as_dict() for s in shots]})
            self.shots = shots

    def _write(self, row: dict[str, object]) -> None:
        with self.path.open("ab") as handle:
            handle.write(json.dumps(row, sort_keys=True).encode() + b"\n")
            handle.flush()
