"""Facesets a person marked as different people (`facesets review`, MarkDifferent): the export
service lists their face groups in STORE.cannot_link.json; refine keeps every face of one group
out of any cluster holding a face of the other (a cannot-link between identities)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import structlog

from facesets.clustering.linkage import Pairs
from facesets.contract import layout

log = structlog.get_logger(__name__)


def marked_groups(store_path: Path) -> list[tuple[list[int], list[int]]]:
    """Every pair of face-id groups marked as two people, over all exports of the store."""
    raw = layout.read_json(Path(str(store_path) + layout.CANNOT_LINK_SUFFIX))
    exports = raw.get("exports") if isinstance(raw, dict) else None
    groups: list[tuple[list[int], list[int]]] = []
    for pairs in (exports or {}).values() if isinstance(exports, dict) else []:
        for pair in pairs if isinstance(pairs, list) else []:
            if isinstance(pair, list) and len(pair) == 2:
                a, b = ([int(i) for i in side if isinstance(i, int)] for side in pair)
                groups.append((a, b))
    return groups


def cannot_pairs(store_path: Path, face_ids: np.ndarray) -> Pairs | None:
    """Row pairs (i < j) of faces marked as different people; None when none is marked."""
    groups = marked_groups(store_path)
    if not groups:
        return None
    row_of = {int(f): r for r, f in enumerate(np.asarray(face_ids).tolist())}
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    for a, b in groups:
        ra = np.array([row_of[i] for i in a if i in row_of], np.int64)
        rb = np.array([row_of[i] for i in b if i in row_of], np.int64)
        if ra.size and rb.size:
            u, v = np.meshgrid(ra, rb, indexing="ij")
            lo, hi = np.minimum(u, v).ravel(), np.maximum(u, v).ravel()
            keep = lo != hi
            us.append(lo[keep])
            vs.append(hi[keep])
    if not us:
        return None
    log.info("refine.different_people", groups=len(groups))
    return np.concatenate(us), np.concatenate(vs)


def apart(
    groups: list[list[int]],
    faces: list[set[int]],
    different: Sequence[tuple[list[int], list[int]]],
) -> list[list[int]]:
    """Merge groups of facesets (rows) split so that no group holds two facesets whose faces
    were marked as different people: each member joins the first part it conflicts with none
    of, in order."""
    if not different:
        return groups
    marks = [(set(a), set(b)) for a, b in different]

    def conflict(i: int, j: int) -> bool:
        return any(
            (faces[i] & a and faces[j] & b) or (faces[i] & b and faces[j] & a) for a, b in marks
        )

    result: list[list[int]] = []
    for group in groups:
        parts: list[list[int]] = []
        for member in group:
            home = next((p for p in parts if not any(conflict(member, o) for o in p)), None)
            if home is None:
                parts.append([member])
            else:
                home.append(member)
        result.extend(p for p in parts if len(p) > 1)
    return result
