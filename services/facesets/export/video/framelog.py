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
from pathlib import Path
from typing import Any

import numpy as np

from facesets.export.video.tracks import FaceObs


def face_to_json(face: FaceObs) -> dict[str, Any]:
    return {
        "bbox": [round(v, 2) for v in face.bbox],
        "score": round(face.det_score, 4),
        "yaw": round(face.yaw, 2),
        "short": round(face.face_short, 2),
        "emb": base64.b64encode(np.asarray(face.embedding, "<f4").tobytes()).decode("ascii"),
    }


def face_from_json(row: dict[str, Any], frame: int, time_s: float) -> FaceObs:
    return FaceObs(
        frame=frame,
        time_s=time_s,
        bbox=tuple(row["bbox"]),  # four values, as face_to_json wrote them
        det_score=float(row["score"]),
        yaw=float(row["yaw"]),
        face_short=float(row["short"]),
        embedding=np.frombuffer(base64.b64decode(row["emb"]), "<f4"),
    )


class FrameLog:
    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = identity
        self.header: dict[str, Any] | None = None
        self.frames: dict[int, dict[str, Any]] = {}
        self.shots: list[dict[str, Any]] | None = None  # None until a pass has found them
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
                except ValueError:
                    break  # a write cut short by a kill: everything after is dropped
                good_end += len(raw)
                if self.header is None:
                    self.header = row
                    self.shots = row.get("shots")  # where earlier versions kept them
                elif "shots" in row:
                    self.shots = row["shots"]
                else:
                    self.frames[int(row["frame"])] = row
        if self.header is None or self.header.get("identity") != self.identity:
            self.header, self.frames, self.shots = None, {}, None
            self.path.unlink(missing_ok=True)
        elif good_end < self.path.stat().st_size:
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)

    def start(self, header: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header = {"identity": self.identity, **header}
        self.frames, self.shots = {}, None
        with self.path.open("wb") as handle:
            handle.write(json.dumps(self.header, sort_keys=True).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, row: dict[str, Any]) -> None:
        self._write(row)
        self.frames[int(row["frame"])] = row

    def set_shots(self, shots: list[dict[str, Any]]) -> None:
        if shots != self.shots:
            self._write({"shots": shots})
            self.shots = shots

    def _write(self, row: dict[str, Any]) -> None:
        with self.path.open("ab") as handle:
            handle.write(json.dumps(row, sort_keys=True).encode() + b"\n")
            handle.flush()
