"""What export reads: one face per `FaceRow`, and the facesets named by a refine manifest."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from facesets.contract import layout
from facesets.contract.manifests import LookalikePair, ManifestError

log = structlog.get_logger(__name__)


class ExportInputError(ValueError):
    """An input of export (a manifest, a face record) cannot be used as given."""


@dataclass
class FaceRow:
    """One detected face with everything export needs, independent of the store's format."""

    face_id: int
    sha256: str
    path: str  # canonical source path
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in oriented image pixels
    kps: np.ndarray  # (5, 2): left eye, right eye, nose, left mouth, right mouth
    det_score: float
    embedding: np.ndarray  # L2-normalised float32
    face_short: float
    blur: float  # sharpness (inference/sharpness.py): low means blurred
    image_width: int
    image_height: int
    aliases: list[str] = field(default_factory=list)  # other paths holding the same bytes
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    landmark_2d_106: np.ndarray | None = None  # (106, 2) where the model pack has it

    def __post_init__(self) -> None:
        self.bbox = tuple(float(v) for v in self.bbox)  # type: ignore[assignment]  # length checked below
        if len(self.bbox) != 4:
            raise ExportInputError(f"face {self.face_id}: bbox needs 4 values")
        self.kps = np.asarray(self.kps, dtype=np.float32).reshape(5, 2)
        emb = np.asarray(self.embedding, dtype=np.float32).ravel()
        norm = float(np.linalg.norm(emb))
        if emb.size == 0 or not np.isfinite(norm) or norm == 0.0:
            raise ExportInputError(f"face {self.face_id}: empty or zero embedding")
        self.embedding = emb / norm  # re-normalised: cheap, and guards float drift
        if self.landmark_2d_106 is not None:
            lmk = np.asarray(self.landmark_2d_106, dtype=np.float32)
            self.landmark_2d_106 = lmk.reshape(-1, 2) if lmk.size else None


# A marker or a bundle label names a file in the set's folder: one plain name, nothing more.
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 _.-]{0,150}")


def _plain_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and _FILE_NAME.fullmatch(name) is not None
        and not name.endswith((".", " "))
    )


@dataclass(frozen=True)
class FacesetSpec:
    """One faceset of a refine manifest: its number and the faces it holds.

    Where a set other than a plain faceset goes (an era, say): `dir`, its folder relative to
    OUT; `partition`, the top-level manifest key listing it; `group`, the group whose entries
    this run replaces (entries of the group that it no longer exports are retired). Empty:
    faceset_NNN in `facesets`. Any set may carry `markers` (file name, text), plain text files
    written into its folder, and a `label` its .fsz bundles are named after
    (`<label>_topN.fsz`; empty: the set's name). A refine manifest entry gives them as `dir`,
    `partition`, `group`, `markers` ({file name: text}) and `bundle`.
    """

    number: int
    face_ids: tuple[int, ...]
    name: str = ""
    dir: str = ""
    partition: str = ""
    markers: tuple[tuple[str, str], ...] = ()
    group: str = ""
    label: str = ""
    flags: tuple[str, ...] = ()  # shown by the review report (e.g. "mixed-people")
    person: tuple[str, str] = ("", "")  # (Immich person id, name) of a seeded faceset

    @property
    def dirname(self) -> str:
        return layout.FACESET_DIR.format(self.number)


_NUMBER = re.compile(r"(\d+)\s*$")
_SAFE_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,150}")  # one part of a set's dir


def _face_ids(entry: Mapping[str, Any]) -> list[int]:
    for key in ("face_ids", "faces", "members"):
        if key in entry:
            raw = entry[key]
            break
    else:
        raise ExportInputError(f"faceset entry without face_ids: {sorted(entry)}")
    ids: list[int] = []
    for item in raw:
        # Plain ids, or face objects carrying their id.
        value = item.get("face_id", item.get("id")) if isinstance(item, Mapping) else item
        try:
            ids.append(int(value))
        except (TypeError, ValueError) as exc:
            raise ExportInputError(f"not a face id: {value!r}") from exc
    return ids


def _spec(entry: Mapping[str, Any], key: str | None) -> FacesetSpec:
    name = str(entry.get("name") or key or "")
    number = entry.get("number")
    if number is None:
        match = _NUMBER.search(name)
        if not match:
            raise ExportInputError(f"faceset entry has no number and no numbered name: {name!r}")
        number = int(match.group(1))
    markers = entry.get("markers") or {}
    if not isinstance(markers, Mapping) or not all(
        _plain_name(k) and isinstance(v, str) for k, v in markers.items()
    ):
        raise ExportInputError(f"faceset {name!r}: markers must map plain file names to text")
    label = entry.get("bundle") or ""
    if label and not _plain_name(label):
        raise ExportInputError(f"faceset {name!r}: bundle must be a plain file name: {label!r}")
    flags = entry.get("flags") or []
    if not isinstance(flags, list) or not all(isinstance(f, str) and f for f in flags):
        raise ExportInputError(f"faceset {name!r}: flags must be a list of words")
    seeded = entry.get("immich_person")
    person = (
        (str(seeded.get("id") or ""), str(seeded.get("name") or ""))
        if isinstance(seeded, Mapping)
        else ("", "")
    )
    folder = str(entry.get("dir") or "")
    if folder and not all(_SAFE_FILE.fullmatch(part) for part in folder.split("/")):
        raise ExportInputError(f"faceset {name!r}: dir must be a plain relative folder")
    return FacesetSpec(
        number=int(number),
        face_ids=tuple(_face_ids(entry)),
        name=name,
        dir=folder,
        partition=str(entry.get("partition") or ""),
        markers=tuple(sorted(markers.items())),
        group=str(entry.get("group") or ""),
        label=str(label),
        flags=tuple(flags),
        person=person,
    )


def parse_refine_manifest(payload: Any) -> list[FacesetSpec]:
    """Facesets of a refine manifest, sorted by number.

    Accepts `{"facesets": [entry, ...]}`, `{"facesets": {name: entry}}` or a bare list; an
    entry names its faces as `face_ids`, `faces` or `members` (ids or objects with `face_id`)
    and its number as `number` or the digits that end its `name`.
    """
    entries: Iterable[tuple[str | None, Any]]
    body = payload.get("facesets") if isinstance(payload, Mapping) else payload
    if isinstance(body, Mapping):
        entries = body.items()
    elif isinstance(body, Sequence) and not isinstance(body, str):
        entries = ((None, entry) for entry in body)
    else:
        raise ExportInputError("refine manifest holds no 'facesets' list")
    specs: dict[int, FacesetSpec] = {}
    for key, entry in entries:
        if not isinstance(entry, Mapping):
            raise ExportInputError(f"faceset entry is not an object: {entry!r}")
        spec = _spec(entry, key)
        if spec.number in specs:
            raise ExportInputError(f"faceset number {spec.number} appears twice")
        specs[spec.number] = spec
    return [specs[n] for n in sorted(specs)]


def read_refine_manifest(path: Path) -> list[FacesetSpec]:
    """`parse_refine_manifest` of a file, with a clear error when it is missing or not JSON."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ExportInputError(f"refine manifest not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportInputError(f"refine manifest unreadable: {path}: {exc}") from exc
    return parse_refine_manifest(payload)


def read_refine_gates(path: Path) -> dict[str, object]:
    """The per-gate counts refine (or route) recorded in its manifest; {} when it has none."""
    try:
        payload = layout.read_json(Path(path), default={})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    gates = payload.get("gates") if isinstance(payload, dict) else None
    return dict(gates) if isinstance(gates, dict) else {}


@dataclass(frozen=True)
class MadeFrom:
    """The face store a refine manifest's face ids belong to, as the manifest records it."""

    store: str
    store_id: str


def read_refine_made_from(path: Path) -> MadeFrom | None:
    """The store refine (or route, extend) recorded with its id; None for a manifest made before
    stores had ids (or unreadable: reading its facesets reports that)."""
    try:
        payload = layout.read_json(Path(path), default={})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    store, store_id = payload.get("store"), payload.get("store_id")
    if not isinstance(store_id, str) or not store_id:
        return None
    return MadeFrom(store if isinstance(store, str) else "", store_id)


def read_refine_lookalikes(path: Path) -> list[LookalikePair] | None:
    """The look-alike pairs refine recorded (`lookalikes`); None when it recorded none. A pair
    that does not name two facesets is left out (the export still runs without it)."""
    try:
        payload = layout.read_json(Path(path), default={})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    pairs = payload.get("lookalikes") if isinstance(payload, dict) else None
    if not isinstance(pairs, list):
        return None
    found: list[LookalikePair] = []
    for pair in pairs:
        try:
            found.append(LookalikePair.from_json(pair, str(path)))
        except ManifestError as exc:
            log.warning("export.lookalike_ignored", path=str(path), error=str(exc))
    return found


def group_faces(
    specs: Sequence[FacesetSpec], rows: Mapping[int, FaceRow]
) -> tuple[dict[int, list[FaceRow]], dict[int, list[int]]]:
    """Rows per faceset number, and per number the face ids the rows do not hold."""
    grouped: dict[int, list[FaceRow]] = {}
    missing: dict[int, list[int]] = {}
    for spec in specs:
        grouped[spec.number] = [rows[i] for i in spec.face_ids if i in rows]
        absent = [i for i in spec.face_ids if i not in rows]
        if absent:
            missing[spec.number] = absent
    return grouped, missing
