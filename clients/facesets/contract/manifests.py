"""Typed models of the JSON manifests the services write and read back.

The refine manifest is the contract between clustering and export, the era plan the one
between `age split` and export, the export's manifest.json the one between export, its
maintenance jobs and the report (and what roop users read). Each model checks what it is given
and says which file and which key is wrong, never a KeyError.

Plain dataclasses with explicit `from_json`/`to_json`: the client distribution stays grpcio,
protobuf and numpy, and an explicit conversion says exactly what is checked and written.

- Schema version: every model writes `schema_version`; a file without one was written before
  it existed and reads as version 1. A file of a newer version is refused (rewriting it could
  drop what newer code relies on).
- Unknown keys are preserved, on purpose: a model keeps the keys it does not declare in
  `extra` and writes them back as they were, so sections only the report reads, and those of
  a newer writer, survive a rewrite.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self, TypeVar

from facesets.contract import layout

SCHEMA_KEY = "schema_version"
SCHEMA_VERSION = 1

# A recorded parameter (Params.recorded): JSON scalars, link modes by name, tuples as lists.
ParamValue = str | int | float | bool | None | list[str] | list[int] | list[float]
# One decision of `age split` on a fragment: counts, distances, years and words.
Decision = dict[str, str | int | float | None]

T = TypeVar("T")


class ManifestError(ValueError):
    """A manifest on disk that cannot be used: not JSON, not an object, a key of the wrong type
    or a newer schema version. A ValueError, so every service answers it FAILED_PRECONDITION.
    `reason` is what is wrong; the message adds `advice` (what to do) where one is given, so
    that a caller with advice of its own can give it alone."""

    def __init__(self, reason: str, advice: str = "") -> None:
        super().__init__(f"{reason}; {advice}" if advice else reason)
        self.reason = reason


# --- checked reading of untrusted JSON ----------------------------------------------------------


def _object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ManifestError(f"{where} is not a JSON object")
    return {str(k): v for k, v in value.items()}


def _bad(where: str, key: str, value: object, what: str) -> ManifestError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ManifestError(f"{where}: {key!r} should be {what}, not {shown}")


def _int(value: object, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _bad(where, key, value, "an integer")
    return value


def _float(value: object, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(where, key, value, "a number")
    return float(value)


def _str(value: object, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise _bad(where, key, value, "a string")
    return value


def _bool(value: object, where: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(where, key, value, "true or false")
    return value


def _list(value: object, where: str, key: str) -> list[object]:
    if not isinstance(value, list):
        raise _bad(where, key, value, "a list")
    return value


def _ints(value: object, where: str, key: str) -> list[int]:
    return [_int(v, where, key) for v in _list(value, where, key)]


def _floats(value: object, where: str, key: str) -> list[float]:
    return [_float(v, where, key) for v in _list(value, where, key)]


def _strs(value: object, where: str, key: str) -> list[str]:
    return [_str(v, where, key) for v in _list(value, where, key)]


def _paths(value: object, where: str, key: str) -> list[str]:
    """The files a job says it wrote: an entry that is not a string names no file it owns and
    is left out (as one naming a path outside the folder is, when the job reads the list)."""
    return [v for v in _list(value, where, key) if isinstance(v, str)]


def _records(value: object, where: str, key: str) -> list[dict[str, object]]:
    return [_object(v, where) for v in _list(value, where, key) if isinstance(v, dict)]


def _objects(value: object, where: str, key: str) -> list[dict[str, object]]:
    return [_object(v, f"{where}: an entry of {key!r}") for v in _list(value, where, key)]


def _optional(
    value: object, read: Callable[[object, str, str], T], where: str, key: str
) -> T | None:
    return None if value is None else read(value, where, key)


def _param(value: object, where: str, key: str) -> ParamValue:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    items = _list(value, where, key)
    if all(isinstance(v, str) for v in items):
        return [str(v) for v in items]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return [int(str(v)) for v in items]
    return _floats(items, where, key)


def parameters_of(value: object, where: str) -> dict[str, ParamValue]:
    """A recorded parameter block (a params object's `recorded()`), checked."""
    block = _object(value, f"{where}: 'parameters'")
    return {k: _param(v, where, f"parameters.{k}") for k, v in block.items()}


def _version(raw: Mapping[str, object], where: str) -> int:
    version = _int(raw.get(SCHEMA_KEY, 1), where, SCHEMA_KEY)
    if version > SCHEMA_VERSION:
        raise ManifestError(
            f"{where} has schema version {version}; this facesets reads up to {SCHEMA_VERSION}"
            " (upgrade facesets to use it)"
        )
    return version


def check_version(raw: object, where: str) -> dict[str, object]:
    """A manifest's JSON object whose schema version this code reads; ManifestError else. For
    readers that take a manifest's sections as they come (the report) rather than a model."""
    block = _object(raw, where)
    _version(block, where)
    return block


def read_object(path: Path, where: str | None = None) -> dict[str, object] | None:
    """The JSON object of a manifest file; None when there is none; ManifestError when it is
    not JSON or not an object."""
    where = where or str(path)
    try:
        payload = layout.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = f"{where} is not a readable manifest ({exc})"
        raise ManifestError(reason, "move it away") from exc
    return None if payload is None else _object(payload, where)


def written_by(raw: Mapping[str, object]) -> str:
    """Which command wrote a manifest.json: a clustering job's names itself (`command`), an
    export's (export-swap and the jobs exporting through it) has its facesets by name."""
    command = raw.get("command")
    if isinstance(command, str) and command:
        return command
    return "export-swap" if isinstance(raw.get("facesets"), dict) else ""


def _rest(raw: Mapping[str, object], known: set[str]) -> dict[str, object]:
    return {k: v for k, v in raw.items() if k not in known and k != SCHEMA_KEY}


class _Model:
    """read/write for the top-level models (each declares from_json and to_json)."""

    def to_json(self) -> dict[str, object]:
        raise NotImplementedError

    @classmethod
    def from_json(cls, raw: object, where: str) -> Self:
        raise NotImplementedError

    @classmethod
    def read(cls, path: Path) -> Self | None:
        """The manifest at `path`, None when there is no file; ManifestError when unusable."""
        raw = read_object(path)
        return None if raw is None else cls.from_json(raw, str(path))

    def write(self, path: Path) -> None:
        """Atomically (temp file + rename), in the byte-stable form layout writes."""
        layout.atomic_write_json(path, self.to_json())


# --- clustering job manifests --------------------------------------------------------------------


@dataclass
class ModelIdentity:
    """The model pack whose embeddings a manifest's face ids and centroids come from."""

    model_pack: str
    embedding_dim: int

    def to_json(self) -> dict[str, object]:
        return {"model_pack": self.model_pack, "embedding_dim": self.embedding_dim}

    @classmethod
    def from_json(cls, raw: object, where: str) -> ModelIdentity:
        block = _object(raw, f"{where}: 'model'")
        return cls(
            _str(block.get("model_pack", ""), where, "model.model_pack"),
            _int(block.get("embedding_dim", 0), where, "model.embedding_dim"),
        )


@dataclass
class FacesetEntry:
    """One faceset (or person folder) of a job manifest: the export reads name, number and
    face_ids; `photos` (sha256s) and `centroid` are written by the jobs that know them."""

    name: str
    number: int
    face_ids: list[int]
    photos: list[str] | None = None
    centroid: list[float] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    KNOWN: ClassVar[set[str]] = {"name", "number", "face_ids", "photos", "centroid"}

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.extra)
        out |= {"name": self.name, "number": self.number, "face_ids": list(self.face_ids)}
        if self.photos is not None:
            out["photos"] = list(self.photos)
        if self.centroid is not None:
            out["centroid"] = list(self.centroid)
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> FacesetEntry:
        entry = _object(raw, f"{where}: a faceset entry")
        at = f"{where}: faceset {entry.get('name', '?')!s}"
        if "name" not in entry or "face_ids" not in entry:
            raise ManifestError(f"{at} has no 'name' or no 'face_ids'")
        return cls(
            name=_str(entry["name"], at, "name"),
            number=_int(entry.get("number", 0), at, "number"),
            face_ids=_ints(entry["face_ids"], at, "face_ids"),
            photos=_optional(entry.get("photos"), _strs, at, "photos"),
            centroid=_optional(entry.get("centroid"), _floats, at, "centroid"),
            extra=_rest(entry, cls.KNOWN),
        )


@dataclass
class LookalikePair:
    """Two facesets that share a photo yet lie close (refine lists them for review)."""

    facesets: list[str]
    distance: float
    shared_photos: list[str]

    def to_json(self) -> dict[str, object]:
        return {
            "facesets": list(self.facesets),
            "distance": self.distance,
            "shared_photos": list(self.shared_photos),
        }

    @classmethod
    def from_json(cls, raw: object, where: str) -> LookalikePair:
        pair = _object(raw, f"{where}: a lookalike pair")
        names = _strs(pair.get("facesets", []), where, "lookalikes.facesets")
        if len(names) != 2:
            raise _bad(where, "lookalikes.facesets", names, "two faceset names")
        return cls(
            names,
            _float(pair.get("distance", 0.0), where, "lookalikes.distance"),
            _strs(pair.get("shared_photos", []), where, "lookalikes.shared_photos"),
        )


@dataclass
class Singletons:
    face_ids: list[int] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"face_ids": list(self.face_ids), "photos": list(self.photos)}


@dataclass
class JobManifest(_Model):
    """A manifest a clustering job keeps in its output folder (refine_manifest.json,
    manifest.json, ...): which command owns the folder, the files it wrote (`written`) or was
    writing when it stopped (`pending`), its parameters, store and model, and its facesets."""

    command: str = ""
    parameters: dict[str, ParamValue] | None = None
    store: str | None = None
    store_id: str | None = None  # the store's own id: its face ids mean nothing in another
    model: ModelIdentity | None = None
    facesets: list[FacesetEntry] | None = None
    written: list[str] | None = None
    pending: list[str] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    KNOWN: ClassVar[set[str]] = {
        "command",
        "parameters",
        "store",
        "store_id",
        "model",
        "facesets",
        "written",
        "pending",
    }

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.extra)
        out[SCHEMA_KEY] = SCHEMA_VERSION
        out["command"] = self.command
        optional: dict[str, object | None] = {
            "parameters": None if self.parameters is None else dict(self.parameters),
            "store": self.store,
            "store_id": self.store_id,
            "model": None if self.model is None else self.model.to_json(),
            "facesets": None
            if self.facesets is None
            else [entry.to_json() for entry in self.facesets],
            "written": None if self.written is None else list(self.written),
            "pending": None if self.pending is None else list(self.pending),
        }
        out |= {k: v for k, v in optional.items() if v is not None}
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> Self:
        block = _object(raw, where)
        _version(block, where)
        model = block.get("model")
        facesets = block.get("facesets")
        made = cls(
            command=_str(block.get("command", ""), where, "command"),
            parameters=None
            if block.get("parameters") is None
            else parameters_of(block["parameters"], where),
            store=_optional(block.get("store"), _str, where, "store"),
            store_id=_optional(block.get("store_id"), _str, where, "store_id"),
            model=None if not model else ModelIdentity.from_json(model, where),
            facesets=None
            if facesets is None
            else [FacesetEntry.from_json(e, where) for e in _list(facesets, where, "facesets")],
            written=_optional(block.get("written"), _paths, where, "written"),
            pending=_optional(block.get("pending"), _paths, where, "pending"),
            extra=_rest(block, cls.KNOWN),
        )
        made._check_extra(where)
        return made

    def _check_extra(self, where: str) -> None:
        """Typed views of sections a subclass reads back (checked when read)."""

    def param(self, name: str, default: ParamValue = None) -> ParamValue:
        return (self.parameters or {}).get(name, default)

    def section(self, key: str) -> dict[str, object]:
        """A section kept untyped (the report's, or a newer writer's); {} when absent."""
        value = self.extra.get(key)
        return _object(value, f"section {key!r}") if value is not None else {}

    def records(self, key: str) -> list[dict[str, object]]:
        """A list-of-objects section kept untyped ([] when absent)."""
        value = self.extra.get(key)
        return [] if value is None else _objects(value, "manifest", key)

    def owned(self) -> list[str]:
        """Every file this job wrote or claimed (written + pending), as listed."""
        return [*(self.written or []), *(self.pending or [])]

    def entries(self) -> list[FacesetEntry]:
        return list(self.facesets or [])


@dataclass
class RefineManifest(JobManifest):
    """refine_manifest.json: facesets with their centroids, what the gates rejected, the
    lookalike pairs. Written by refine (and route, discover, import-folders, extend)."""

    def _check_extra(self, where: str) -> None:
        self.rejected()
        self.lookalikes()

    def rejected(self) -> dict[str, list[int]]:
        """Face ids each gate removed, by gate."""
        block = self.section("rejected")
        return {k: _ints(v, "refine manifest", f"rejected.{k}") for k, v in block.items()}

    def lookalikes(self) -> list[LookalikePair] | None:
        """The lookalike pairs; None in a manifest made before refine listed them."""
        value = self.extra.get("lookalikes")
        if value is None:
            return None
        return [
            LookalikePair.from_json(p, "refine manifest")
            for p in _list(value, "refine manifest", "lookalikes")
        ]


@dataclass
class ClusterManifest(JobManifest):
    """manifest.json of `cluster`: person folders, singletons and the faces of each."""

    persons: list[FacesetEntry] = field(default_factory=list)
    singletons: Singletons = field(default_factory=Singletons)

    KNOWN: ClassVar[set[str]] = JobManifest.KNOWN | {"persons", "singletons"}

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["persons"] = [p.to_json() for p in self.persons]
        out["singletons"] = self.singletons.to_json()
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> Self:
        made = super().from_json(raw, where)
        block = _object(raw, where)
        persons = _list(block.get("persons", []), where, "persons")
        made.persons = [FacesetEntry.from_json(p, where) for p in persons]
        singles = _object(block.get("singletons", {}), f"{where}: 'singletons'")
        made.singletons = Singletons(
            _ints(singles.get("face_ids", []), where, "singletons.face_ids"),
            _strs(singles.get("photos", []), where, "singletons.photos"),
        )
        return made


# --- consolidate's rounds ----------------------------------------------------------------------


@dataclass
class Merge:
    """Facesets of a refine output that `consolidate` folds into one (`target`); once applied,
    the files it added and the folders it moved aside (name -> _merged/...)."""

    target: str
    sources: list[str]
    min_similarity: float
    added_files: list[str] = field(default_factory=list)
    moved: dict[str, str] = field(default_factory=dict)

    def planned(self) -> dict[str, object]:
        return {
            "target": self.target,
            "sources": list(self.sources),
            "min_similarity": self.min_similarity,
        }

    def to_json(self) -> dict[str, object]:
        return self.planned() | {"added_files": list(self.added_files), "moved": dict(self.moved)}

    @classmethod
    def from_json(cls, raw: object, where: str) -> Merge:
        merge = _object(raw, f"{where}: a merge")
        moved = _object(merge.get("moved", {}), f"{where}: a merge's 'moved'")
        return cls(
            _str(merge.get("target"), where, "merges.target"),
            _strs(merge.get("sources", []), where, "merges.sources"),
            _float(merge.get("min_similarity", 0.0), where, "merges.min_similarity"),
            _strs(merge.get("added_files", []), where, "merges.added_files"),
            {k: _str(v, where, "merges.moved") for k, v in moved.items()},
        )


@dataclass
class Candidate:
    """Two facesets whose centroids lie close enough to list (and whether they merged)."""

    a: str
    b: str
    similarity: float
    merged: bool

    def to_json(self) -> dict[str, object]:
        return {"a": self.a, "b": self.b, "similarity": self.similarity, "merged": self.merged}

    @classmethod
    def from_json(cls, raw: object, where: str) -> Candidate:
        pair = _object(raw, f"{where}: a candidate")
        return cls(
            _str(pair.get("a"), where, "candidates.a"),
            _str(pair.get("b"), where, "candidates.b"),
            _float(pair.get("similarity", 0.0), where, "candidates.similarity"),
            _bool(pair.get("merged", False), where, "candidates.merged"),
        )


@dataclass
class ConsolidateRound:
    """One applied (or half-applied: status `applying`) consolidation, with the refine
    manifest as it was before, so the round can be undone."""

    status: str
    parameters: dict[str, ParamValue]
    refine_before: str
    merges: list[Merge]
    candidates: list[Candidate]
    refine_after_sha256: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "status": self.status,
            "parameters": dict(self.parameters),
            "refine_before": self.refine_before,
            "merges": [m.to_json() for m in self.merges],
            "candidates": [c.to_json() for c in self.candidates],
        }
        if self.refine_after_sha256 is not None:
            out["refine_after_sha256"] = self.refine_after_sha256
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> ConsolidateRound:
        block = _object(raw, f"{where}: a round")
        return cls(
            status=_str(block.get("status"), where, "rounds.status"),
            parameters=parameters_of(block.get("parameters", {}), where),
            refine_before=_str(block.get("refine_before"), where, "rounds.refine_before"),
            merges=[
                Merge.from_json(m, where) for m in _list(block.get("merges", []), where, "merges")
            ],
            candidates=[
                Candidate.from_json(c, where)
                for c in _list(block.get("candidates", []), where, "candidates")
            ],
            refine_after_sha256=_optional(
                block.get("refine_after_sha256"), _str, where, "refine_after_sha256"
            ),
        )


@dataclass
class ConsolidateState(_Model):
    """consolidate_manifest.json beside a refine manifest: the rounds applied, last on top."""

    rounds: list[ConsolidateRound] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        rounds = [r.to_json() for r in self.rounds]
        return dict(self.extra) | {SCHEMA_KEY: SCHEMA_VERSION, "rounds": rounds}

    @classmethod
    def from_json(cls, raw: object, where: str) -> Self:
        block = _object(raw, where)
        _version(block, where)
        rounds = _list(block.get("rounds", []), where, "rounds")
        return cls([ConsolidateRound.from_json(r, where) for r in rounds], _rest(block, {"rounds"}))


# --- the era plan ----------------------------------------------------------------------------


@dataclass
class EraEntry:
    """One era of an era plan: where it goes in the export and the faces it holds."""

    name: str
    number: int
    face_ids: list[int]
    dir: str
    partition: str
    group: str
    label: str = ""
    anchor: bool = False
    anchor_centroid: list[float] | None = None
    anchor_year: int | None = None
    joined: list[Decision] = field(default_factory=list)
    years: dict[str, int | None] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    KNOWN: ClassVar[set[str]] = {
        "name",
        "number",
        "face_ids",
        "dir",
        "partition",
        "group",
        "label",
        "anchor",
        "anchor_centroid",
        "anchor_year",
        "joined",
        "years",
        "markers",
    }

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.extra)
        out |= {
            "name": self.name,
            "number": self.number,
            "dir": self.dir,
            "partition": self.partition,
            "group": self.group,
            "face_ids": list(self.face_ids),
            "years": dict(self.years),
            "label": self.label,
            "markers": dict(self.markers),
            "anchor": self.anchor,
        }
        if self.anchor:
            out["anchor_centroid"] = list(self.anchor_centroid or [])
            out["anchor_year"] = self.anchor_year
            out["joined"] = [dict(d) for d in self.joined]
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> EraEntry:
        entry = _object(raw, f"{where}: an era")
        at = f"{where}: era {entry.get('name', '?')!s}"
        for key in ("name", "number", "face_ids"):
            if key not in entry:
                raise ManifestError(f"{at} has no {key!r}")
        name = _str(entry["name"], at, "name")
        years = _object(entry.get("years", {}), f"{at}: 'years'")
        markers = _object(entry.get("markers", {}), f"{at}: 'markers'")
        return cls(
            name=name,
            number=_int(entry["number"], at, "number"),
            face_ids=_ints(entry["face_ids"], at, "face_ids"),
            dir=_str(entry.get("dir", name), at, "dir"),
            partition=_str(entry.get("partition", ""), at, "partition"),
            group=_str(entry.get("group", ""), at, "group"),
            label=_str(entry.get("label", ""), at, "label"),
            anchor=_bool(entry.get("anchor", False), at, "anchor"),
            anchor_centroid=_optional(entry.get("anchor_centroid"), _floats, at, "anchor_centroid"),
            anchor_year=_optional(entry.get("anchor_year"), _int, at, "anchor_year"),
            joined=[_decision(d, at) for d in _list(entry.get("joined", []), at, "joined")],
            years={k: _optional(v, _int, at, f"years.{k}") for k, v in years.items()},
            markers={k: _str(v, at, f"markers.{k}") for k, v in markers.items()},
            extra=_rest(entry, cls.KNOWN),
        )


def _decision(raw: object, where: str) -> Decision:
    record = _object(raw, f"{where}: a fragment decision")
    out: Decision = {}
    for key, value in record.items():
        if value is not None and not isinstance(value, str | int | float):
            raise _bad(where, key, value, "a number or a string")
        out[key] = value
    return out


@dataclass
class EraPlan(_Model):
    """EXPORT/.eras/faceset_NNN.json: how `age split` divides one exported faceset into eras."""

    faceset: str
    facesets: list[EraEntry]
    centroid: list[float]
    command: str = "age_split"
    model: ModelIdentity | None = None
    store: str | None = None
    store_id: str | None = None
    parameters: dict[str, ParamValue] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    seed_centroid: list[float] | None = None
    fragments: list[Decision] = field(default_factory=list)
    no_capture_time: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    KNOWN: ClassVar[set[str]] = {
        "command",
        "faceset",
        "model",
        "store",
        "store_id",
        "parameters",
        "roots",
        "seed_centroid",
        "centroid",
        "facesets",
        "fragments",
        "no_capture_time",
    }

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.extra)
        out |= {
            SCHEMA_KEY: SCHEMA_VERSION,
            "command": self.command,
            "faceset": self.faceset,
            "model": None if self.model is None else self.model.to_json(),
            "store": self.store,
            **({} if self.store_id is None else {"store_id": self.store_id}),
            "parameters": dict(self.parameters),
            "roots": list(self.roots),
            "seed_centroid": self.seed_centroid,
            "centroid": list(self.centroid),
            "facesets": [e.to_json() for e in self.facesets],
            "fragments": [dict(d) for d in self.fragments],
            "no_capture_time": list(self.no_capture_time),
        }
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> Self:
        plan = _object(raw, where)
        _version(plan, where)
        for key in ("faceset", "facesets", "centroid"):
            if key not in plan:
                raise ManifestError(f"{where} is not an era plan: it has no {key!r}")
        model = plan.get("model")
        return cls(
            faceset=_str(plan["faceset"], where, "faceset"),
            facesets=[
                EraEntry.from_json(e, where) for e in _list(plan["facesets"], where, "facesets")
            ],
            centroid=_floats(plan["centroid"], where, "centroid"),
            command=_str(plan.get("command", "age_split"), where, "command"),
            model=None if not model else ModelIdentity.from_json(model, where),
            store=_optional(plan.get("store"), _str, where, "store"),
            store_id=_optional(plan.get("store_id"), _str, where, "store_id"),
            parameters=parameters_of(plan.get("parameters", {}), where),
            roots=_strs(plan.get("roots", []), where, "roots"),
            seed_centroid=_optional(plan.get("seed_centroid"), _floats, where, "seed_centroid"),
            fragments=[
                _decision(d, where) for d in _list(plan.get("fragments", []), where, "fragments")
            ],
            no_capture_time=_strs(plan.get("no_capture_time", []), where, "no_capture_time"),
            extra=_rest(plan, cls.KNOWN),
        )


# --- the export ------------------------------------------------------------------------------

# The partitions of an export's manifest.json that hold faceset entries by name; the aliases
# are names older exports used, read as partitions where they hold an object.
PARTITION_KEYS = ("facesets", "masked", "thin_eras", "merged", "eras")
PARTITION_ALIASES = ("era_buckets", "thin")


@dataclass
class ExportManifest(_Model):
    """OUT/manifest.json: the facesets of an export by partition (`facesets`, `eras`,
    `thin_eras`, `masked`, `merged`), each entry naming its folder (`dir`) and its own
    manifest; the runs that changed the export (`maintenance_runs`, `age_extend_runs`, ...)
    and the sections the report reads (gates, lookalikes, candidates), kept as written."""

    version: int = 1
    partitions: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.extra)
        out[SCHEMA_KEY] = SCHEMA_VERSION
        out["version"] = self.version
        for key, section in self.partitions.items():
            out[key] = {name: dict(entry) for name, entry in section.items()}
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> Self:
        block = _object(raw, where)
        _version(block, where)
        partitions: dict[str, dict[str, dict[str, object]]] = {}
        for key in (*PARTITION_KEYS, *PARTITION_ALIASES):
            if key in block and (key in PARTITION_KEYS or isinstance(block[key], dict)):
                section = _object(block[key], f"{where}: {key!r}")
                partitions[key] = {
                    name: _object(entry, f"{where}: {key}.{name}")
                    for name, entry in section.items()
                }
        return cls(
            version=_int(block.get("version", 1), where, "version"),
            partitions=partitions,
            extra=_rest(block, {"version", *partitions}),
        )

    def partition(self, key: str) -> dict[str, dict[str, object]]:
        return self.partitions.setdefault(key, {})

    def entries(self) -> Iterator[tuple[str, str, dict[str, object]]]:
        """(partition, name, entry) of every faceset the export lists."""
        for key, section in self.partitions.items():
            for name, entry in section.items():
                yield key, name, entry

    def runs(self, key: str) -> list[dict[str, object]]:
        """A list of run blocks (maintenance_runs, age_extend_runs, ...); [] when absent or
        not a list (a hand-edited file: such a block reads as no runs, as before)."""
        value = self.extra.get(key)
        return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


@dataclass
class FacesetManifest(_Model):
    """OUT/<faceset>/manifest.json: one exported faceset's crops (best rank first), the faces
    it dropped and why, its .fsz bundles and every file it wrote. Crop and drop records are
    kept as written (the report reads many of their keys); `face_ids` reads the one key the
    clustering jobs need."""

    faceset: str = ""
    number: int = 0
    version: int = 1
    params: dict[str, object] = field(default_factory=dict)
    fsz_top: str | None = None
    fsz_all: str | None = None
    counts: dict[str, object] = field(default_factory=dict)
    crops: list[dict[str, object]] = field(default_factory=list)
    dropped: list[dict[str, object]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    KNOWN: ClassVar[set[str]] = {
        "version",
        "faceset",
        "number",
        "params",
        "fsz_top",
        "fsz_all",
        "counts",
        "crops",
        "dropped",
        "files",
    }

    # The keys the file held: a key an older export did not write is not added empty.
    read_keys: set[str] = field(
        default_factory=lambda: set(FacesetManifest.KNOWN), compare=False, repr=False
    )

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.extra)
        known: dict[str, object] = {
            "version": self.version,
            "faceset": self.faceset,
            "number": self.number,
            "params": dict(self.params),
            "fsz_top": self.fsz_top,
            "fsz_all": self.fsz_all,
            "counts": dict(self.counts),
            "crops": [dict(c) for c in self.crops],
            "dropped": [dict(d) for d in self.dropped],
            "files": list(self.files),
        }
        blank = FacesetManifest(read_keys=set()).__dict__
        out |= {k: v for k, v in known.items() if k in self.read_keys or v != blank[k]}
        out[SCHEMA_KEY] = SCHEMA_VERSION
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> Self:
        block = _object(raw, where)
        _version(block, where)
        return cls(
            faceset=_str(block.get("faceset", ""), where, "faceset"),
            number=_int(block.get("number", 0), where, "number"),
            version=_int(block.get("version", 1), where, "version"),
            params=_object(block.get("params") or {}, f"{where}: 'params'"),
            fsz_top=_optional(block.get("fsz_top"), _str, where, "fsz_top"),
            fsz_all=_optional(block.get("fsz_all"), _str, where, "fsz_all"),
            counts=_object(block.get("counts") or {}, f"{where}: 'counts'"),
            # Records that are not objects, and files that are not names, are left out, as
            # the export and its maintenance jobs always left them (a hand-edited manifest).
            crops=_records(block.get("crops", []), where, "crops"),
            dropped=_records(block.get("dropped", []), where, "dropped"),
            files=_paths(block.get("files", []), where, "files"),
            extra=_rest(block, cls.KNOWN),
            read_keys=set(block) & cls.KNOWN,
        )

    def top_n(self) -> int:
        """The export's top_n (0 when the manifest records none)."""
        return as_int(self.params.get("top_n"), 0)

    def face_ids(self) -> list[int]:
        """The face id of every kept crop (a crop without one is left out)."""
        where = f"faceset {self.faceset}"
        return [_int(c["face_id"], where, "crops.face_id") for c in self.crops if "face_id" in c]

    def sources(self, crop: Mapping[str, object]) -> list[str]:
        """The source photo of a crop and its aliases (other paths of the same photo)."""
        where = f"faceset {self.faceset}"
        source = crop.get("source")
        aliases = _strs(crop.get("aliases", []), where, "crops.aliases")
        return [*([_str(source, where, "crops.source")] if source else []), *aliases]


def as_int(value: object, default: int) -> int:
    """A number some record holds as an int (a hand-edited one may hold anything: `default`)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        return int(value)
    except ValueError:
        return default


def as_float(value: object, default: float) -> float:
    """A number some record holds as a float (anything else: `default`)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        return float(value)
    except ValueError:
        return default


# --- video: OUT/plan.json ----------------------------------------------------------------------


def _opt_float(value: object, where: str, key: str) -> float | None:
    return _optional(value, _float, where, key)


@dataclass
class PlanShot:
    """One shot of a video, as the shot detector found it."""

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_s": self.start_s,
            "end_s": self.end_s,
        }

    @classmethod
    def from_json(cls, raw: object, where: str) -> PlanShot:
        shot = _object(raw, f"{where}: a shot")
        return cls(
            _int(shot.get("index"), where, "shots.index"),
            _int(shot.get("start_frame", 0), where, "shots.start_frame"),
            _int(shot.get("end_frame", 0), where, "shots.end_frame"),
            _float(shot.get("start_s"), where, "shots.start_s"),
            _float(shot.get("end_s", 0.0), where, "shots.end_s"),
        )


@dataclass
class ClipCut:
    """What `video cut` made of a segment: the clip, how it was cut and the span it holds."""

    clip: str
    mode: str
    requested_start_s: float
    requested_end_s: float
    actual_start_s: float
    actual_end_s: float
    duration_s: float | None = None
    frames: int | None = None  # a stream copy: the frames it holds
    reencoded: str | None = None  # why a copy was not possible
    extra: dict[str, object] = field(default_factory=dict)

    KNOWN: ClassVar[set[str]] = {
        "clip",
        "mode",
        "requested_start_s",
        "requested_end_s",
        "actual_start_s",
        "actual_end_s",
        "duration_s",
        "frames",
        "reencoded",
    }

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.extra) | {
            "clip": self.clip,
            "mode": self.mode,
            "requested_start_s": self.requested_start_s,
            "requested_end_s": self.requested_end_s,
            "actual_start_s": self.actual_start_s,
            "actual_end_s": self.actual_end_s,
            "duration_s": self.duration_s,
        }
        if self.frames is not None:
            out["frames"] = self.frames
        if self.reencoded is not None:
            out["reencoded"] = self.reencoded
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> ClipCut:
        cut = _object(raw, f"{where}: a cut")
        return cls(
            clip=_str(cut.get("clip"), where, "cut.clip"),
            mode=_str(cut.get("mode", ""), where, "cut.mode"),
            requested_start_s=_float(cut.get("requested_start_s", 0.0), where, "cut.start"),
            requested_end_s=_float(cut.get("requested_end_s", 0.0), where, "cut.end"),
            actual_start_s=_float(cut.get("actual_start_s", 0.0), where, "cut.actual_start_s"),
            actual_end_s=_float(cut.get("actual_end_s", 0.0), where, "cut.actual_end_s"),
            duration_s=_opt_float(cut.get("duration_s"), where, "cut.duration_s"),
            frames=_optional(cut.get("frames"), _int, where, "cut.frames"),
            reencoded=_optional(cut.get("reencoded"), _str, where, "cut.reencoded"),
            extra=_rest(cut, cls.KNOWN),
        )


@dataclass
class PlannedSegment:
    """A span of one shot where the tracked faces pass the gates: a clip to cut."""

    id: str
    source: str
    name: str  # the clip folder (the video's name)
    shot: int
    requested_start_s: float
    requested_end_s: float
    tracks: list[int] = field(default_factory=list)
    frames: int = 0
    pass_rate: float = 0.0
    mean_quality: float = 0.0
    match_distance: float | None = None
    cut: ClipCut | None = None
    extra: dict[str, object] = field(default_factory=dict)

    KNOWN: ClassVar[set[str]] = {
        "id",
        "source",
        "name",
        "shot",
        "tracks",
        "requested_start_s",
        "requested_end_s",
        "frames",
        "pass_rate",
        "mean_quality",
        "match_distance",
        "cut",
    }

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.extra) | {
            "id": self.id,
            "source": self.source,
            "name": self.name,
            "shot": self.shot,
            "tracks": list(self.tracks),
            "requested_start_s": self.requested_start_s,
            "requested_end_s": self.requested_end_s,
            "frames": self.frames,
            "pass_rate": self.pass_rate,
            "mean_quality": self.mean_quality,
            "match_distance": self.match_distance,
        }
        if self.cut is not None:
            out["cut"] = self.cut.to_json()
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> PlannedSegment:
        seg = _object(raw, f"{where}: a segment")
        at = f"{where}: segment {seg.get('id', '?')!s}"
        cut = seg.get("cut")
        return cls(
            id=_str(seg.get("id"), at, "id"),
            source=_str(seg.get("source"), at, "source"),
            name=_str(seg.get("name"), at, "name"),
            shot=_int(seg.get("shot", 0), at, "shot"),
            requested_start_s=_float(seg.get("requested_start_s"), at, "requested_start_s"),
            requested_end_s=_float(seg.get("requested_end_s"), at, "requested_end_s"),
            tracks=_ints(seg.get("tracks", []), at, "tracks"),
            frames=_int(seg.get("frames", 0), at, "frames"),
            pass_rate=_float(seg.get("pass_rate", 0.0), at, "pass_rate"),
            mean_quality=_float(seg.get("mean_quality", 0.0), at, "mean_quality"),
            match_distance=_opt_float(seg.get("match_distance"), at, "match_distance"),
            cut=ClipCut.from_json(cut, at) if cut else None,
            extra=_rest(seg, cls.KNOWN),
        )


@dataclass
class PlannedVideo:
    """One video of a plan: its shots and what planning it took (or why it failed)."""

    name: str
    source: str
    duration_s: float = 0.0
    fps: float = 0.0
    shots: list[PlanShot] = field(default_factory=list)
    sampled_frames: int = 0
    inferred_frames: int = 0  # sent to the inference service in the run that planned it
    reused_frames: int = 0  # read back from the frame log
    frame_errors: int = 0
    faces: int = 0
    tracks: int = 0
    dropped_segments: int = 0
    error: str = ""

    COUNTS: ClassVar[tuple[str, ...]] = (
        "sampled_frames",
        "inferred_frames",
        "reused_frames",
        "frame_errors",
        "faces",
        "tracks",
        "dropped_segments",
    )

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "source": self.source,
            "duration_s": self.duration_s,
            "fps": self.fps,
            "shots": [s.to_json() for s in self.shots],
            "error": self.error,
        }
        return out | {key: getattr(self, key) for key in self.COUNTS}

    @classmethod
    def from_json(cls, raw: object, where: str) -> PlannedVideo:
        video = _object(raw, f"{where}: a video")
        at = f"{where}: video {video.get('name', '?')!s}"
        counts = {key: _int(video.get(key, 0), at, key) for key in cls.COUNTS}
        return cls(
            name=_str(video.get("name"), at, "name"),
            source=_str(video.get("source", ""), at, "source"),
            duration_s=_float(video.get("duration_s", 0.0), at, "duration_s"),
            fps=_float(video.get("fps", 0.0), at, "fps"),
            shots=[PlanShot.from_json(s, at) for s in _list(video.get("shots", []), at, "shots")],
            error=_str(video.get("error", ""), at, "error"),
            **counts,
        )


@dataclass
class VideoPlan(_Model):
    """OUT/plan.json of `video plan`: the videos planned and the segments to cut; `video cut`
    records each clip it made in its segment (`cut`)."""

    src: str = ""
    match_dir: str | None = None
    params: dict[str, ParamValue] = field(default_factory=dict)
    scenedetect: str = ""
    videos: list[PlannedVideo] = field(default_factory=list)
    segments: list[PlannedSegment] = field(default_factory=list)
    version: int = 1
    extra: dict[str, object] = field(default_factory=dict)

    KNOWN: ClassVar[set[str]] = {
        "version",
        "src",
        "match_dir",
        "params",
        "scenedetect",
        "videos",
        "segments",
    }

    def to_json(self) -> dict[str, object]:
        return dict(self.extra) | {
            SCHEMA_KEY: SCHEMA_VERSION,
            "version": self.version,
            "src": self.src,
            "match_dir": self.match_dir,
            "params": dict(self.params),
            "scenedetect": self.scenedetect,
            "videos": [v.to_json() for v in self.videos],
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, raw: object, where: str) -> Self:
        plan = _object(raw, where)
        _version(plan, where)
        videos = _list(plan.get("videos", []), where, "videos")
        segments = _list(plan.get("segments", []), where, "segments")
        return cls(
            src=_str(plan.get("src", ""), where, "src"),
            match_dir=_optional(plan.get("match_dir"), _str, where, "match_dir"),
            params=parameters_of(plan.get("params") or {}, where),
            scenedetect=_str(plan.get("scenedetect", ""), where, "scenedetect"),
            videos=[PlannedVideo.from_json(v, where) for v in videos],
            segments=[PlannedSegment.from_json(s, where) for s in segments],
            version=_int(plan.get("version", 1), where, "version"),
            extra=_rest(plan, cls.KNOWN),
        )

    def shot_starts(self) -> dict[tuple[str, int], float]:
        """(source, shot index) -> the shot's start, seconds."""
        return {(v.source, s.index): s.start_s for v in self.videos for s in v.shots}
