"""`immich import --people`: Immich's people (read by `immich stage` into state.json) as seeds of
the route job.

Each face Immich gave a person is matched to one of facesets' own detections of the staged
photo by box overlap: Immich's box is in the pixel space of the image it ran detection on
(imageWidth x imageHeight, a preview), scaled here to the staged photo's size as the store
recorded it. `named`: every named, non-hidden person seeds an identity carrying its name;
`all`: unnamed people seed unnamed identities too (a grouping hint, named later when the user
names them in Immich); `none`: people are not used (the import as it was before them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from facesets.contract import layout
from facesets.contract.clustering import RouteSeed
from facesets.orchestrator.connect import Services
from facesets.orchestrator.immich.api import Face, ImmichProtocolError
from facesets.orchestrator.immich.state import STAGED, read_state_file
from facesets.orchestrator.settings import SETTINGS

PEOPLE_MODES = ("named", "all", "none")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    face_id: int
    box: Box
    width: int  # the staged photo's size as the store recorded it (0: unknown)
    height: int


class SeededPerson(TypedDict):
    name: str
    faces: int  # of the seed: its faces matched to a detection


class PeopleSummary(TypedDict):
    people: dict[str, SeededPerson]  # Immich id -> person
    faces_matched: int
    faces_unmatched: int


@dataclass
class PeopleSeeds:
    """The seeds and what matching found: Immich faces matched to a detection, and not."""

    seeds: list[RouteSeed] = field(default_factory=list)
    people: dict[str, str] = field(default_factory=dict)  # Immich id -> name ("": unnamed)
    matched: int = 0
    unmatched: int = 0

    def as_dict(self) -> PeopleSummary:
        return {
            "people": {
                seed.key: {"name": seed.name, "faces": len(seed.face_ids)} for seed in self.seeds
            },
            "faces_matched": self.matched,
            "faces_unmatched": self.unmatched,
        }


def iou(a: Box, b: Box) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scaled(face: Face, width: int, height: int) -> Box:
    """Immich's box in the staged photo's pixels (unchanged when either size is unknown)."""
    sx = width / face.image_width if width > 0 and face.image_width > 0 else 1.0
    sy = height / face.image_height if height > 0 and face.image_height > 0 else 1.0
    return (face.x1 * sx, face.y1 * sy, face.x2 * sx, face.y2 * sy)


def match_faces(
    faces: Sequence[Face], detections: Sequence[Detection], min_iou: float
) -> dict[str, int]:
    """Immich face id -> facesets face id: pairs taken best overlap first, each side once."""
    pairs = sorted(
        (
            (iou(scaled(face, det.width, det.height), det.box), face.id, det.face_id)
            for face in faces
            for det in detections
        ),
        key=lambda pair: (-pair[0], pair[1], pair[2]),
    )
    found: dict[str, int] = {}
    taken: set[int] = set()
    for overlap, face_id, det_id in pairs:
        if overlap < min_iou:
            break
        if face_id not in found and det_id not in taken:
            found[face_id] = det_id
            taken.add(det_id)
    return found


def wanted_people(people: Mapping[str, object], mode: str) -> dict[str, str]:
    """The people that seed identities in this mode (hidden ones never do): Immich id -> name
    (state.json's people, as `immich stage` recorded them)."""
    if mode == "none":
        return {}
    chosen: dict[str, str] = {}
    for person_id, person in people.items():
        if not isinstance(person, dict) or person.get("is_hidden"):
            continue
        name = str(person.get("name") or "").strip()
        if name or mode == "all":
            chosen[str(person_id)] = name
    return chosen


def read_detections(
    opened: Services, store: Path, sha256: Iterable[str]
) -> dict[str, list[Detection]]:
    """facesets' detections of these photos (sha256 -> detections), from the store."""
    wanted = set(sha256)
    found: dict[str, list[Detection]] = {}
    for record in opened.clustering().read_faces(str(store), False):
        if record.sha256 in wanted and len(record.face.bbox) == 4:
            x1, y1, x2, y2 = (float(v) for v in record.face.bbox)
            found.setdefault(record.sha256, []).append(
                Detection(
                    int(record.face_id),
                    (x1, y1, x2, y2),
                    int(record.image_width),
                    int(record.image_height),
                )
            )
    return found


def _faces(recorded: object) -> list[Face]:
    """A staged asset's faces as state.json keeps them; one that does not read is left out."""
    faces = []
    for item in recorded if isinstance(recorded, list) else []:
        try:
            faces.append(Face.from_state(item))
        except ImmichProtocolError:
            continue
    return faces


def people_seeds(opened: Services, user_dir: Path, store: Path, mode: str) -> PeopleSeeds:
    """The route job's seeds from what `immich stage` recorded in state.json."""
    if mode not in PEOPLE_MODES:
        raise ValueError(f"--people must be one of {', '.join(PEOPLE_MODES)}, not {mode!r}")
    people, records = read_state_file(user_dir / layout.IMMICH_STATE)
    result = PeopleSeeds(people=wanted_people(people, mode))
    if not result.people:
        return result
    staged = {
        record.sha256: _faces(record.faces)
        for record in records.values()
        if record.status == STAGED and record.sha256
    }
    detections = read_detections(opened, store, staged)
    faces_of: dict[str, set[int]] = {}
    for sha, faces in sorted(staged.items()):
        ours = [face for face in faces if face.person_id in result.people]
        if not ours:
            continue
        # Every face of the photo takes part: another person's face may overlap better.
        found = match_faces(faces, detections.get(sha, []), SETTINGS.immich.face_match_iou)
        result.matched += sum(1 for face in ours if face.id in found)
        result.unmatched += sum(1 for face in ours if face.id not in found)
        for face in ours:
            if face.id in found and face.person_id is not None:
                faces_of.setdefault(face.person_id, set()).add(found[face.id])
    result.seeds = [
        RouteSeed(person_id, result.people[person_id], tuple(sorted(ids)))
        for person_id, ids in sorted(faces_of.items())
    ]
    return result
