"""Seeded identities for `route`: people a user already curated elsewhere (Immich's named
people) become facesets before routing, and where that curation and facesets' own measures
disagree it is reported, never silently resolved.

A seed is a key (the Immich person id, kept in the faceset's `immich_person` so a rename is not
a new identity), a name ("" for an unnamed person, a grouping hint) and the store's faces the
user gave it. Per seed:

- its core: starting from its medoid, the faces within the outlier threshold of the centroid,
  re-centred a few rounds; a face beyond it is reported (`immich_merged`: the curation merged
  two people) and left to routing and clustering like any other face;
- two faces of one photo (cannot-link): the one nearer the core stays, the other is reported
  (`immich_split`);
- after all seeds, two named facesets whose centroids lie within the merge threshold are
  reported (`immich_named_twice`): both stay as they are.

A faceset seeded earlier (same key) keeps its number: its name, folder and .fsz names follow the
person's current name. So does a faceset without a person that already holds most of a new
person's faces (an import made before the name was given): it takes the person and the name.
Faces another faceset already holds stay where they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypedDict

import numpy as np

from facesets.clustering.jobs import quality
from facesets.clustering.jobs.facesets import faceset_entry
from facesets.clustering.jobs.job import centroid_of, face_index_by_id, sorted_ids
from facesets.clustering.store import FaceTable
from facesets.common import settings
from facesets.contract import layout
from facesets.contract.clustering import RouteParams
from facesets.contract.immich import MERGED, NAMED_TWICE, SPLIT
from facesets.contract.manifests import FacesetEntry


@dataclass(frozen=True)
class Seed:
    key: str
    name: str
    face_ids: tuple[int, ...]


@dataclass(frozen=True)
class Person:
    """The Immich person a faceset was seeded from (its entry's `immich_person`)."""

    id: str
    name: str


class Split(TypedDict):
    """Two faces of one photo in one seed: the farther ones leave it."""

    kind: str
    person: str
    person_id: str
    photo: str
    face_ids: list[int]
    reference_face_ids: list[int]


class Merged(TypedDict):
    """Faces of one seed beyond the outlier threshold of its core."""

    kind: str
    person: str
    person_id: str
    face_ids: list[int]
    distances: list[float]
    reference_face_ids: list[int]
    threshold: float


class HeldTwice(TypedDict):
    """A named person whose faces another person's faceset already holds."""

    kind: str
    people: list[str]
    person_ids: list[str]
    facesets: list[str]
    held_by: str
    face_ids: list[list[int]]


class NamedTwice(TypedDict):
    """Two named facesets whose centroids lie within the merge threshold."""

    kind: str
    people: list[str]
    person_ids: list[str]
    facesets: list[str]
    distance: float
    threshold: float
    face_ids: list[list[int]]


Disagreement = Split | Merged | HeldTwice | NamedTwice


@dataclass
class Seeding:
    facesets: list[FacesetEntry]
    disagreements: list[Disagreement] = field(default_factory=list)
    seeded: dict[str, list[int]] = field(default_factory=dict)  # faceset name -> faces added
    new: list[str] = field(default_factory=list)  # facesets the seeds created
    renamed: dict[str, str] = field(default_factory=dict)  # old name -> new name


def person_of(entry: FacesetEntry) -> Person | None:
    person = entry.extra.get("immich_person")
    if not isinstance(person, dict) or not person.get("id"):
        return None
    return Person(str(person["id"]), str(person.get("name") or ""))


def named_entry(
    number: int, face_ids: list[int], table: FaceTable, key: str, name: str
) -> FacesetEntry:
    """A seeded faceset: named ones go to faceset_NNN_<slug> (folder and .fsz names); the
    export retires the old folder of a number exported under a new name."""
    entry = faceset_entry(number, face_ids, table)
    folder = layout.named_faceset_dir(number, name)
    extra: dict[str, object] = {"immich_person": {"id": key, "name": name}}
    if folder != entry.name:
        extra |= {"dir": folder, "bundle": folder}
        return replace(entry, name=folder, extra=extra)
    return replace(entry, extra=extra)


def _core(emb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(centroid, distances) of the faces' core: from the medoid, the faces within `threshold`
    of the centroid, re-centred until it settles."""
    medoid = int(np.argmax((emb @ emb.T).sum(axis=1)))
    centre = emb[medoid]
    inside = np.zeros(len(emb), dtype=bool)
    for _ in range(settings.clustering().people.core_rounds):
        now = (1.0 - emb @ centre) <= threshold
        if not now.any():
            now[medoid] = True
        if np.array_equal(now, inside):
            break
        inside = now
        centre = centroid_of(emb[inside])
    return centre, 1.0 - emb @ centre


def _references(ids: np.ndarray, distances: np.ndarray, inside: np.ndarray) -> list[int]:
    order = np.argsort(distances, kind="stable")
    return [int(ids[i]) for i in order if inside[i]][: settings.clustering().people.reference_faces]


def apply_seeds(
    facesets: list[FacesetEntry],
    seeds: Sequence[Seed],
    table: FaceTable,
    usable: np.ndarray,
    p: RouteParams,
) -> Seeding:
    """The facesets with every seed applied (see the module's docstring); `usable`: the rows
    of faces whose photos the job may read."""
    assert table.embedding is not None
    index = face_index_by_id(table)
    usable_set = {int(r) for r in usable}
    facesets = list(facesets)
    out = Seeding(facesets)
    holder = {int(f): i for i, entry in enumerate(facesets) for f in entry.face_ids}
    next_number = max((e.number for e in facesets), default=0) + 1
    for seed in sorted(seeds, key=lambda s: (s.name == "", s.name.casefold(), s.key)):
        at: int | None = next(
            (i for i, e in enumerate(facesets) if _person_id(e) == seed.key),
            None,
        )
        rows = np.asarray(
            sorted(index[f] for f in set(seed.face_ids) if f in index and index[f] in usable_set),
            dtype=np.int64,
        )
        if rows.size:
            rows = rows[quality.passes(p.gate, table, rows)]
        if not rows.size:
            continue
        ids = table.face_id[rows]
        emb = table.embedding[rows]
        _, distances = _core(emb, p.outlier_threshold)
        inside = distances <= p.outlier_threshold
        label = seed.name or seed.key
        outliers = ~inside
        splits: list[Split] = []
        if p.cannot_link:
            by_photo: dict[str, list[int]] = {}
            for i in np.flatnonzero(inside):
                by_photo.setdefault(table.sha256[rows[i]], []).append(int(i))
            for sha, members in sorted(by_photo.items()):
                if len(members) < 2:
                    continue
                members.sort(key=lambda i: (float(distances[i]), int(ids[i])))
                for other in members[1:]:
                    inside[other] = False
                splits.append(
                    {
                        "kind": SPLIT,
                        "person": label,
                        "person_id": seed.key,
                        "photo": sha,
                        "face_ids": [int(ids[i]) for i in members[1:]],
                        "reference_face_ids": [int(ids[members[0]])],
                    }
                )
        if outliers.any():
            merged: Merged = {
                "kind": MERGED,
                "person": label,
                "person_id": seed.key,
                "face_ids": [int(f) for f in ids[outliers]],
                "distances": [round(float(d), 4) for d in distances[outliers]],
                "reference_face_ids": _references(ids, distances, inside),
                "threshold": float(p.outlier_threshold),
            }
            out.disagreements.append(merged)
        out.disagreements += splits
        if at is None:
            holders = [holder.get(int(f)) for f in ids[inside]]
            at = _adoptable(facesets, holders)
            owner = _majority(holders)
            if at is None and seed.name and owner is not None:
                # Its faces already make up another person's faceset: named twice.
                out.disagreements.append(_held_twice(seed, facesets[owner], ids[inside]))
        # A face another faceset holds stays there (it still counts in the checks above).
        inside &= np.array([holder.get(int(f), at) == at for f in ids], dtype=bool)
        kept = sorted_ids(ids[inside])
        photos = len({table.sha256[rows[i]] for i in np.flatnonzero(inside)})
        if at is None:
            if not kept or (not seed.name and photos < p.min_faces):
                continue  # an unnamed person too small for a faceset: no hint to follow
            entry = named_entry(next_number, kept, table, seed.key, seed.name)
            facesets.append(entry)
            at = len(facesets) - 1
            next_number += 1
            out.new.append(entry.name)
            out.seeded[entry.name] = kept
        else:
            old = facesets[at]
            seeded_before = {int(f) for f in seed.face_ids}
            # Faces it holds that the person no longer has (or that now disagree) leave it;
            # faces routed to it on their own stay.
            keep = [int(f) for f in old.face_ids if int(f) not in seeded_before]
            members = sorted_ids([*keep, *kept]) or sorted_ids(old.face_ids)
            entry = named_entry(old.number, members, table, seed.key, seed.name)
            added = sorted(set(kept) - {int(f) for f in old.face_ids})
            if added:
                out.seeded[entry.name] = added
            if old.name != entry.name:
                out.renamed[old.name] = entry.name
            facesets[at] = entry
        for f in facesets[at].face_ids:
            holder[int(f)] = at
    out.disagreements += _named_twice(facesets)
    return out


def _majority(holders: list[int | None]) -> int | None:
    """The faceset holding more than half of a person's faces; None when none does."""
    counts = Counter(h for h in holders if h is not None)
    if not counts:
        return None
    best, held = min(counts.items(), key=lambda item: (-item[1], item[0]))
    return best if 2 * held > len(holders) else None


def _person_id(entry: FacesetEntry) -> str | None:
    person = person_of(entry)
    return person.id if person is not None else None


def _adoptable(facesets: Sequence[FacesetEntry], holders: list[int | None]) -> int | None:
    """The faceset a person's faces already make up (an import before its name was known):
    one without a person that holds most of them; None when there is none."""
    best = _majority(holders)
    return best if best is not None and person_of(facesets[best]) is None else None


def _held_twice(seed: Seed, holder: FacesetEntry, faces: np.ndarray) -> HeldTwice:
    """A named person whose faces another person's faceset already holds."""
    person = person_of(holder) or Person("", "")
    shown = settings.clustering().people.reference_faces
    return {
        "kind": NAMED_TWICE,
        "people": [seed.name, person.name],
        "person_ids": [seed.key, person.id],
        "facesets": [holder.name],
        "held_by": holder.name,
        "face_ids": [[int(f) for f in faces[:shown]], [int(f) for f in holder.face_ids[:shown]]],
    }


def _named_twice(facesets: Sequence[FacesetEntry]) -> list[NamedTwice]:
    named = [(e, p) for e in facesets if (p := person_of(e)) is not None and p.name]
    found: list[NamedTwice] = []
    for i, (first, first_person) in enumerate(named):
        for second, second_person in named[i + 1 :]:
            a = np.asarray(first.centroid, dtype=np.float32)
            b = np.asarray(second.centroid, dtype=np.float32)
            distance = 1.0 - float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
            if distance <= settings.clustering().people.named_twice_distance:
                pair = (first, second)
                found.append(
                    {
                        "kind": NAMED_TWICE,
                        "people": [first_person.name, second_person.name],
                        "person_ids": [first_person.id, second_person.id],
                        "facesets": [e.name for e in pair],
                        "distance": round(distance, 4),
                        "threshold": settings.clustering().people.named_twice_distance,
                        "face_ids": [
                            [
                                int(f)
                                for f in e.face_ids[: settings.clustering().people.reference_faces]
                            ]
                            for e in pair
                        ],
                    }
                )
    return found
