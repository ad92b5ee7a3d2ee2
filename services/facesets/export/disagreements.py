"""Where facesets and the user's Immich people disagree (route's `immich_disagreements`), shown in
the export: one strip per disagreement, the faces in question beside the faces they are
compared with, and the list in the top-level manifest under `immich_disagreements`.

Strips are OUT/immich_disagreements/NNN_<kind>.png; a run removes the strips an earlier run
listed and this one does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from facesets.common.beneath import Beneath
from facesets.contract import layout
from facesets.contract.immich import KINDS
from facesets.export.crops import crop_square, encode_png
from facesets.export.records import FaceRow

DISAGREEMENTS_KEY = "immich_disagreements"
STRIP_DIR = "immich_disagreements"
_STRIP = re.compile(STRIP_DIR + r"/\d{3}_[a-z_]+\.png")  # the only files a run removes
TILE = 112  # pixels of each face in a strip
GAP = 12  # the grey gap between the faces in question and those they are compared with

LoadImage = Callable[[str, str], np.ndarray]  # (path, the sha256 the store holds)


def read_refine_disagreements(path: Path) -> list[dict[str, object]] | None:
    """The disagreements route recorded; None when the refine manifest holds none."""
    try:
        payload = layout.read_json(Path(path), default={})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    items = payload.get(DISAGREEMENTS_KEY) if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return None
    return [dict(item) for item in items if isinstance(item, dict) and _readable(item)]


def _readable(item: Mapping[str, object]) -> bool:
    """A disagreement of a known kind whose faces are ids (a hand-edited manifest may hold
    anything: what does not fit is left out, never fatal)."""
    if item.get("kind") not in KINDS:
        return False
    try:
        sides(item)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return False
    return True


def sides(item: Mapping[str, object]) -> tuple[list[int], list[int]]:
    """(faces in question, faces they are compared with) of one disagreement; TypeError when
    its face lists are not lists (a hand-edited manifest)."""
    ids = item.get("face_ids") or []
    if not isinstance(ids, list):
        raise TypeError(f"face_ids is not a list: {ids!r}")
    if ids and isinstance(ids[0], list):  # named twice: the faces of each faceset
        first, *rest = ids
        return [int(f) for f in first], [int(f) for group in rest for f in group]
    references = item.get("reference_face_ids") or []
    if not isinstance(references, list):
        raise TypeError(f"reference_face_ids is not a list: {references!r}")
    return [int(f) for f in ids], [int(f) for f in references]


def face_ids(items: Sequence[Mapping[str, object]]) -> list[int]:
    return sorted({f for item in items for side in sides(item) for f in side})


def _tile(row: FaceRow | None, load_image: LoadImage, pad_ratio: float) -> np.ndarray:
    if row is not None:
        for path in [row.path, *row.aliases]:
            try:
                return crop_square(load_image(path, row.sha256), row.bbox, pad_ratio, TILE)
            except Exception:  # an unreadable photo shows as a blank tile, never fatal
                continue
    return np.zeros((TILE, TILE, 3), dtype=np.uint8)


def write_section(
    out: Path,
    items: Sequence[Mapping[str, object]],
    rows: Mapping[int, FaceRow],
    load_image: LoadImage,
    previous: object,  # the list an earlier run wrote (anything, if edited)
    pad_ratio: float,
) -> list[dict[str, object]]:
    """The manifest's list: each disagreement with `file`, its strip (faces in question on the
    left, a gap, the faces compared with on the right)."""
    disk = Beneath(out)
    written: set[str] = set()
    listed: list[dict[str, object]] = []
    for number, item in enumerate(items, start=1):
        left, right = sides(item)
        tiles = [_tile(rows.get(f), load_image, pad_ratio) for f in left]
        gap = np.full((TILE, GAP, 3), 128, dtype=np.uint8)
        tiles += [gap] + [_tile(rows.get(f), load_image, pad_ratio) for f in right]
        rel = f"{STRIP_DIR}/{number:03d}_{item['kind']}.png"  # kinds are plain words
        disk.write_bytes(rel, encode_png(np.hstack(tiles)))
        written.add(rel)
        listed.append({**item, "file": rel})
    for old in previous if isinstance(previous, list) else []:
        stale = old.get("file") if isinstance(old, dict) else None
        if isinstance(stale, str) and _STRIP.fullmatch(stale) and stale not in written:
            disk.unlink(stale)
    return listed
