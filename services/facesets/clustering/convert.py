"""Between protobuf messages and the store's records."""

from __future__ import annotations

import sqlite3

import numpy as np

from facesets.clustering.store import FaceData, ImageData
from facesets.v1 import clustering_pb2, common_pb2


def face_from_proto(face: common_pb2.Face) -> FaceData:
    embedding = np.frombuffer(face.embedding, dtype="<f4") if face.embedding else None
    has_pose = face.HasField("pose")
    return FaceData(
        bbox=tuple(face.bbox),  # type: ignore[arg-type]  # four values; a repeated field has no length
        kps=np.asarray(face.kps, np.float32).reshape(5, 2),
        det_score=face.det_score,
        embedding=embedding,
        face_short=face.face_short,
        blur=face.blur,
        landmark_2d_106=np.asarray(face.landmark_2d_106, np.float32).reshape(-1, 2)
        if face.landmark_2d_106
        else None,
        landmark_3d_68=np.asarray(face.landmark_3d_68, np.float32).reshape(-1, 3)
        if face.landmark_3d_68
        else None,
        yaw=face.pose.yaw if has_pose else None,
        pitch=face.pose.pitch if has_pose else None,
        roll=face.pose.roll if has_pose else None,
        pose_source=face.pose.source if has_pose else 0,
        blur_measure=face.blur_measure,
    )


def image_from_item(item: clustering_pb2.IngestItem) -> ImageData:
    result = item.result
    error = result.error if result.HasField("error") else None
    return ImageData(
        sha256=item.file.sha256,
        path=item.file.path,
        size=item.file.size,
        width=result.width,
        height=result.height,
        capture_time=result.capture_time,
        faces=[] if error else [face_from_proto(f) for f in result.faces],
        error_reason=common_pb2.ErrorReason.Name(error.reason) if error else "",
        error_message=error.message if error else "",
    )


def _floats(blob: bytes | None) -> list[float]:
    return [] if blob is None else np.frombuffer(blob, dtype="<f4").tolist()


def face_record(r: sqlite3.Row, aliases: list[str]) -> clustering_pb2.FaceRecord:
    """A row of FaceStore.iter_face_rows as the FaceRecord message."""
    face = common_pb2.Face(
        bbox=[r["x1"], r["y1"], r["x2"], r["y2"]],
        kps=_floats(r["kps"]),
        det_score=r["det_score"],
        face_short=r["face_short"],
        blur=r["blur"],
        blur_measure=r["blur_measure"],
        landmark_2d_106=_floats(r["landmark_2d_106"]),
        landmark_3d_68=_floats(r["landmark_3d_68"]),
    )
    if "embedding" in r.keys() and r["embedding"] is not None:  # noqa: SIM118 (Row iterates values)
        face.embedding = r["embedding"]
        face.embedding_dim = len(r["embedding"]) // 4
    if r["yaw"] is not None:
        face.pose.CopyFrom(
            common_pb2.Pose(yaw=r["yaw"], pitch=r["pitch"], roll=r["roll"], source=r["pose_source"])
        )
    return clustering_pb2.FaceRecord(
        face_id=r["face_id"],
        sha256=r["sha256"],
        path=r["path"],
        aliases=aliases,
        face_index=r["face_index"],
        face=face,
        image_width=r["width"],
        image_height=r["height"],
    )
