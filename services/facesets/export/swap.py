"""`facesets export-swap`: roop-ready crops and .fsz faceset files, one folder per identity.

Per faceset: gate small faces and identity outliers, rank by composite quality, crop each
face square, keep only crops holding exactly one detectable face (cut tighter when needed),
collapse near-duplicate photos, and write `faceset_NNN_topN.fsz`, `faceset_NNN_all.fsz` and a
manifest. Ownership is explicit: a re-run only replaces or removes files that the previous
manifest says export wrote; anything else in OUT is left alone.

The job is a plain function so the gRPC servicer and the CLI stay thin wrappers: they supply
`load_image`, `count_faces` and a `progress` callback and pass the summary on.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict

import cv2
import numpy as np
import structlog

from facesets.common import settings
from facesets.common.beneath import Beneath, SymlinkRefusedError, is_relative, parent_of
from facesets.common.progress import ProgressFn
from facesets.common.vectors import iou, unit_mean
from facesets.contract import layout
from facesets.contract.export import ExportSwapParams
from facesets.contract.manifests import SCHEMA_KEY, SCHEMA_VERSION, LookalikePair, written_by
from facesets.contract.review import bundle_name
from facesets.export import disagreements as immich
from facesets.export.crops import (
    CheckedCrop,
    CountFaces,
    checked_crops,
    crop_square,
    encode_png,
    hamming,
    phash,
)
from facesets.export.curation import Carried, Curation, read_curation
from facesets.export.errors import ExportError
from facesets.export.fsz import fsz_bytes, member_name
from facesets.export.maintenance import journal
from facesets.export.quality import QualityScores, quality_scores
from facesets.export.records import FaceRow, FacesetSpec

log = structlog.get_logger(__name__)

Skipped = dict[str, int | str]  # a source photo that could not be read: face id, path, error

LoadImage = Callable[[str, str], np.ndarray]  # (path, the sha256 the store holds)

MANIFEST_VERSION = 1
REASON_SMALL = "small"
REASON_OUTLIER = "outlier"
REASON_DUPLICATE = "duplicate"
REASON_UNREADABLE = "unreadable"
SAME_FACE_IOU = 0.5  # boxes of one photo overlapping this much are the same face
MAX_NAME_BYTES = 200  # file names stay under common 255-byte limits with room for prefixes


# --- names and small helpers ------------------------------------------------------------------


def crop_name(row: FaceRow) -> str:
    """`<flattened source path>_f<face_id>.png`: stable across runs whatever the rank."""
    flat = layout.flattened_name(row.path).lstrip(".") or "image"
    flat = "".join(ch if ch.isprintable() and ch not in '/\\"<>|?*' else "_" for ch in flat)
    name = f"{flat}_f{row.face_id}.png"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        digest = hashlib.sha1(flat.encode("utf-8")).hexdigest()[:12]
        tail = flat.encode("utf-8")[-120:].decode("utf-8", errors="ignore")
        name = f"{digest}_{tail}_f{row.face_id}.png"
    return name


def faceset_name(number: int) -> str:
    return layout.FACESET_DIR.format(number)


PARTITION_FACESETS = "facesets"


@dataclass(frozen=True)
class SetTarget:
    """Where one exported set goes: a plain faceset (faceset_NNN in `facesets`) unless told.

    `name` keys its top-level manifest entry; `dir` is its folder relative to OUT; `partition`
    the top-level manifest key listing it; `markers` plain text files (name, text) written into
    its folder; `group` ties entries that one run replaces together; `label` names its .fsz
    files (`bundle`: the label when given, else the set's name).
    """

    name: str
    dir: str
    partition: str = PARTITION_FACESETS
    markers: tuple[tuple[str, str], ...] = ()
    group: str = ""
    label: str = ""
    flags: tuple[str, ...] = ()  # carried into its manifest entry, for the review report
    person: tuple[str, str] = ("", "")  # (Immich person id, name): manifests' `name`
    stem: str = ""  # the .fsz files' stem where it is not the label (a name given in review)

    @property
    def bundle(self) -> str:
        """What the set's .fsz files are named after: `<bundle>_topN.fsz`, `<bundle>_all.fsz`."""
        return self.stem or self.label or self.name

    @classmethod
    def faceset(cls, number: int) -> SetTarget:
        return cls(faceset_name(number), faceset_name(number))

    @classmethod
    def of(cls, spec: FacesetSpec) -> SetTarget:
        """A refine manifest entry's set: a plain faceset unless it names its own folder."""
        if spec.dir:
            return cls(
                spec.name,
                spec.dir,
                spec.partition or PARTITION_FACESETS,
                spec.markers,
                spec.group,
                spec.label,
                spec.flags,
                spec.person,
            )
        plain = cls.faceset(spec.number)
        return cls(
            plain.name,
            plain.dir,
            markers=spec.markers,
            label=spec.label,
            flags=spec.flags,
            person=spec.person,
        )


def _rel(out: Path, path: Path) -> str:
    return path.relative_to(out).as_posix()


def _write_if_changed(out: Path, path: Path, data: bytes) -> None:
    """Atomic write, skipped when the file already holds these bytes (idempotent re-runs);
    resolved below OUT without following a link."""
    disk, rel = Beneath(out), _rel(out, path)
    info = disk.lstat(rel)
    if info is not None and info.st_size == len(data) and disk.read_bytes(rel) == data:
        return
    disk.write_bytes(rel, data)


def _read_manifest(path: Path, *, required: bool, out: Path | None = None) -> dict[str, object]:
    """A manifest export wrote earlier; {} when absent.

    An unreadable top-level manifest stops the export (merging would lose its entries);
    an unreadable per-faceset one only costs the clean-up of that faceset's stale files.
    """
    try:
        if out is None:
            payload = layout.read_json(path, default={})
        else:
            payload = Beneath(out).read_json(_rel(out, path), default={})
    except SymlinkRefusedError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if required:
            raise ExportError(
                f"existing manifest is unreadable, not overwriting it: {path}: {exc}"
            ) from exc
        log.warning("export.manifest_unreadable", path=str(path), error=str(exc))
        return {}
    if not isinstance(payload, dict):
        if required:
            raise ExportError(f"existing manifest is not a JSON object: {path}")
        return {}
    return payload


def _remove_stale(out: Path, owned_root: Path, previous: object, written: set[str]) -> int:
    """Delete files the previous run wrote under owned_root that this run did not write."""
    removed = 0
    disk = Beneath(out)
    root = _rel(out, owned_root)
    if not isinstance(previous, list):  # a hand-edited manifest: own nothing rather than guess
        previous = []
    owned = [
        rel
        for rel in previous
        if isinstance(rel, str) and is_relative(rel) and rel.startswith(root + "/")
    ]
    for rel in previous:
        if isinstance(rel, str) and rel not in written and rel not in owned:
            log.warning("export.stale_path_ignored", path=rel)
    for rel in owned:
        if rel not in written and disk.is_file(rel):
            disk.unlink(rel)
            removed += 1
    for folder in sorted(
        {parent_of(rel) for rel in owned}, key=lambda p: p.count("/"), reverse=True
    ):
        # Folders export created and left empty go too; a folder holding anything stays.
        if folder.startswith(root + "/") and disk.is_dir(folder):
            disk.rmdir(folder)
    return removed


# --- one faceset ------------------------------------------------------------------------------


@dataclass
class _Face:
    row: FaceRow
    scores: QualityScores
    distance: float  # cosine distance to the faceset centroid


@dataclass
class _Params:
    top_n: int
    outlier_threshold: float
    pad_ratio: float
    out_size: int
    min_face_short: float


@dataclass
class _SetResult:
    number: int
    target: SetTarget
    entry: dict[str, object]  # the top-level manifest entry
    centroid: np.ndarray | None
    faces: int = 0  # distinct faces asked for
    skipped: list[Skipped] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    kept: int = 0
    top: int = 0
    recropped: int = 0
    fsz: list[str] = field(default_factory=list)


def _gate(
    rows: Sequence[FaceRow], params: _Params
) -> tuple[list[_Face], list[tuple[_Face, str, str]], np.ndarray | None]:
    """Faces passing the size and outlier gates (best first), the rejected ones, the centroid.

    The centroid is taken twice: over every face large enough, then over the faces within
    the threshold of that first guess, so a few strangers cannot drag it towards themselves.
    """
    scored = [_Face(row, quality_scores(row), 0.0) for row in rows]
    rejected: list[tuple[_Face, str, str]] = []
    large = []
    for face in scored:
        if face.row.face_short < params.min_face_short:
            detail = f"face short edge {face.row.face_short:.0f}px < {params.min_face_short:.0f}px"
            rejected.append((face, REASON_SMALL, detail))
        else:
            large.append(face)
    centroid: np.ndarray | None = None
    passed: list[_Face] = []
    if large:
        matrix = np.stack([f.row.embedding for f in large])
        first = unit_mean(matrix)
        near = 1.0 - matrix @ first <= params.outlier_threshold
        centroid = unit_mean(matrix[near]) if near.any() else first
        for face, distance in zip(large, 1.0 - matrix @ centroid, strict=True):
            face.distance = float(distance)
            if face.distance > params.outlier_threshold:
                detail = f"cosine distance {face.distance:.3f} > {params.outlier_threshold:.2f}"
                rejected.append((face, REASON_OUTLIER, detail))
            else:
                passed.append(face)
    passed.sort(key=lambda f: (-f.scores.composite, f.row.face_id))
    return passed, rejected, centroid


def _load(row: FaceRow, load_image: LoadImage, cache: dict[str, np.ndarray]) -> np.ndarray:
    """The face's photo, from its canonical path or, when that is gone, an alias.

    A photo whose size differs from the record's was replaced after embedding: its box
    would cut the wrong place, so it counts as unreadable. So does a box outside the photo.
    """
    errors: list[str] = []
    for path in [row.path, *row.aliases]:
        if path in cache:
            return cache[path]
        try:
            image = load_image(path, row.sha256)
        except Exception as exc:  # any reader failure skips the photo, never the export
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        height, width = image.shape[:2]
        recorded = (row.image_width, row.image_height)
        if all(v > 0 for v in recorded) and (width, height) != recorded:
            errors.append(f"{path}: {width}x{height}, recorded as {recorded[0]}x{recorded[1]}")
            continue
        x1, y1, x2, y2 = row.bbox
        if not (x2 > max(x1, 0) and y2 > max(y1, 0) and x1 < width and y1 < height):
            errors.append(f"{path}: face box {row.bbox} outside the {width}x{height} photo")
            continue
        cache[path] = image
        return image
    raise LookupError("; ".join(errors) or "no path")


class _DuplicateIndex:
    """Faces kept so far, to find re-encoded or resized copies of the same photo.

    A copy is the same file (sha256) with an overlapping box, or a face whose embedding is
    nearly identical (cosine ≥ EXPORT_DUPLICATE_SIM) AND whose crop has nearly the same
    perceptual hash: the two signals fail on different photos (two shots of one pose share
    a hash; look-alike embeddings come from different scenes), so requiring both keeps
    distinct photos of a pose apart while catching copies.
    """

    def __init__(self) -> None:
        self.faces: list[FaceRow] = []
        self.hashes: list[int] = []

    def find(self, row: FaceRow, crop_hash: int) -> FaceRow | None:
        for other in self.faces:
            if other.sha256 == row.sha256 and iou(other.bbox, row.bbox) > SAME_FACE_IOU:
                return other
        if not self.faces:
            return None
        sims = np.stack([f.embedding for f in self.faces]) @ row.embedding
        for index in np.flatnonzero(sims >= settings.export().duplicates.similarity):
            if hamming(self.hashes[index], crop_hash) <= settings.export().duplicates.hash_bits:
                return self.faces[index]
        return None

    def add(self, row: FaceRow, crop_hash: int) -> None:
        self.faces.append(row)
        self.hashes.append(crop_hash)

    def remove(self, row: FaceRow) -> None:
        index = next(i for i, face in enumerate(self.faces) if face is row)
        del self.faces[index], self.hashes[index]


def _prefer(copy: FaceRow, kept: FaceRow) -> bool:
    """Whether a copy should replace the kept face: it has clearly more pixels of the face.

    Ranking alone could keep a downscaled copy, which can rank as high as the original;
    the swap gains more from the full-resolution original.
    """
    return copy.face_short >= kept.face_short * settings.export().duplicates.prefer_larger


def _face_record(face: _Face) -> dict[str, object]:
    return {
        "face_id": face.row.face_id,
        "source": face.row.path,
        "aliases": list(face.row.aliases),
        "sha256": face.row.sha256,
        "bbox": [round(v, 2) for v in face.row.bbox],
        "distance": round(face.distance, 6),
        "scores": {k: v for k, v in face.scores.as_dict().items() if k != "composite"},
        "composite": round(face.scores.composite, 6),
    }


def _attempts(checked: CheckedCrop) -> list[list[float | int]]:
    return [[pad, count] for pad, count in checked.attempts]


@dataclass
class _Gated:
    """Step 1's output: faces to crop (best first), faces turned away, the identity's centroid."""

    faces: int  # distinct faces asked for
    passed: list[_Face]
    rejected: list[tuple[_Face, str, str]]  # face, reason, detail
    centroid: np.ndarray | None


@dataclass
class _Drop:
    """A face left out of the faceset, with the review thumbnail when one could be made."""

    face: _Face
    reason: str
    detail: str
    thumbnail: np.ndarray | None = None  # EXPORT_REJECTED_SIZE square
    attempts: list[list[float | int]] | None = None


@dataclass
class _Checked:
    """A face whose crop holds exactly one face, with the crop's perceptual hash."""

    face: _Face
    crop: CheckedCrop
    crop_hash: int

    @property
    def image(self) -> np.ndarray:
        assert self.crop.image is not None  # only crops that passed the check become _Checked
        return self.crop.image


@dataclass
class _Cropped:
    """Step 2's output, in the order of the faces given."""

    checked: list[_Checked] = field(default_factory=list)
    dropped: list[_Drop] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # unreadable sources


@dataclass
class _Ranked:
    """A kept face, in its order among this run's (best first), with its file name and PNG
    bytes (its rank comes with the crops a review or maintenance run left in the faceset)."""

    checked: _Checked
    file_name: str
    png: bytes


def _thumbnail(crop: np.ndarray | None) -> np.ndarray | None:
    if crop is None:
        return None
    size = settings.export().crops.rejected_size
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _dedupe(rows: Sequence[FaceRow]) -> list[FaceRow]:
    unique: dict[int, FaceRow] = {}
    for row in rows:
        unique.setdefault(row.face_id, row)
    return list(unique.values())


def _gate_set(rows: Sequence[FaceRow], params: _Params) -> _Gated:
    unique = _dedupe(rows)
    passed, rejected, centroid = _gate(unique, params)
    return _Gated(len(unique), passed, rejected, centroid)


def _rejected_drops(
    rejected: Sequence[tuple[_Face, str, str]], params: _Params, load_image: LoadImage
) -> list[_Drop]:
    """Faces the gate turned away, with a review thumbnail when their photo can still be read."""
    drops = []
    for face, reason, detail in rejected:
        try:
            image = _load(face.row, load_image, {})
            crop = crop_square(image, face.row.bbox, params.pad_ratio, params.out_size)
        except (LookupError, ValueError):
            crop = None
        drops.append(_Drop(face, reason, detail, _thumbnail(crop)))
    return drops


def _crop_and_check(
    name: str,
    passed: Sequence[_Face],
    params: _Params,
    load_image: LoadImage,
    count_faces: CountFaces,
    progress: ProgressFn | None,
) -> _Cropped:
    """Square crops of the passed faces, checked to hold exactly one face (cut tighter when
    needed), a batch of EXPORT_CHECK_BATCH photos in memory at a time."""
    result = _Cropped()
    total = len(passed)
    batch = max(1, settings.export().crops.check_batch)
    for start in range(0, total, batch):
        cache: dict[str, np.ndarray] = {}
        loaded: list[tuple[_Face, np.ndarray]] = []
        for face in passed[start : start + batch]:
            try:
                loaded.append((face, _load(face.row, load_image, cache)))
            except LookupError as exc:
                detail = str(exc)
                result.dropped.append(_Drop(face, REASON_UNREADABLE, detail))
                result.skipped.append(
                    {
                        "faceset": name,
                        "face_id": face.row.face_id,
                        "source": face.row.path,
                        "error": detail,
                    }
                )
                log.warning("export.source_skipped", faceset=name, path=face.row.path, error=detail)
        checks = checked_crops(
            [(image, face.row.bbox) for face, image in loaded],
            count_faces,
            pad_ratio=params.pad_ratio,
            out_size=params.out_size,
        )
        for (face, image), checked in zip(loaded, checks, strict=True):
            if checked.image is None:
                found = ", ".join(f"{count} at pad {pad}" for pad, count in checked.attempts)
                result.dropped.append(
                    _Drop(
                        face,
                        checked.reason,
                        f"faces found: {found}",
                        _thumbnail(checked.last),
                        _attempts(checked),
                    )
                )
                continue
            crop_hash = phash(crop_square(image, face.row.bbox, params.pad_ratio, 64))
            result.checked.append(_Checked(face, checked, crop_hash))
        if progress:
            progress("crop", min(start + batch, total), total, name)
    return result


def _collapse_duplicates(checked: Sequence[_Checked]) -> tuple[list[_Checked], list[_Drop]]:
    """One face per photo among copies (re-encoded, resized): the first in rank order, unless
    a later copy holds clearly more pixels of the face; it then takes the end of the list."""
    kept: list[_Checked] = []
    dropped: list[_Drop] = []
    index = _DuplicateIndex()
    for item in checked:
        row = item.face.row
        twin = index.find(row, item.crop_hash)
        if twin is not None and _prefer(row, twin):
            position = next(i for i, k in enumerate(kept) if k.face.row is twin)
            replaced = kept.pop(position)
            index.remove(twin)
            dropped.append(
                _Drop(
                    replaced.face,
                    REASON_DUPLICATE,
                    f"smaller copy of face {row.face_id} ({row.path})",
                    _thumbnail(replaced.image),
                )
            )
        elif twin is not None:
            dropped.append(
                _Drop(
                    item.face,
                    REASON_DUPLICATE,
                    f"copy of face {twin.face_id} ({twin.path})",
                    _thumbnail(item.image),
                )
            )
            continue
        index.add(row, item.crop_hash)
        kept.append(item)
    return kept, dropped


def _rank(kept: Sequence[_Checked]) -> list[_Ranked]:
    """The crop files of the kept faces, in kept order (best composite first, a preferred copy
    last)."""
    return [_Ranked(item, crop_name(item.face.row), encode_png(item.image)) for item in kept]


def _write_set(
    out: Path,
    number: int,
    target: SetTarget,
    gated: _Gated,
    ranked: Sequence[_Ranked],
    drops: Sequence[_Drop],
    skipped: list[Skipped],
    params: _Params,
    progress: ProgressFn | None,
    carried: Carried,
) -> _SetResult:
    """Crops, review thumbnails, the two .fsz files and the faceset manifest; files an earlier
    run wrote and this one did not are removed. `carried`: what review and maintenance runs
    put into this faceset or dropped from it, kept as they left it (see `curation`)."""
    name = target.name
    set_dir = out / target.dir
    manifest_path = set_dir / layout.FACESET_MANIFEST
    previous = _read_manifest(manifest_path, required=False, out=out)
    written: set[str] = set()

    dropped: list[tuple[str, int, dict[str, object]]] = []  # (reason, face id, record)
    reasons: Counter[str] = Counter()
    for drop in drops:
        record = _face_record(drop.face) | {"reason": drop.reason, "detail": drop.detail}
        if drop.thumbnail is not None:
            path = set_dir / layout.REJECTED_DIR / crop_name(drop.face.row)
            _write_if_changed(out, path, encode_png(drop.thumbnail))
            written.add(_rel(out, path))
            record["thumbnail"] = _rel(out, path)
        if drop.attempts is not None:
            record["attempts"] = drop.attempts
        dropped.append((drop.reason, drop.face.row.face_id, record))
        reasons[drop.reason] += 1
    for record in carried.dropped:  # a run's drops stay as it recorded them
        reason = str(record.get("reason", ""))
        face_id = record.get("face_id")
        dropped.append((reason, face_id if isinstance(face_id, int) else -1, record))
        reasons[reason] += 1

    # This run's crops and those a run brought in, ranked together by composite quality
    # (this run's first at equal quality, as a merge ranks a target's own first).
    placed: list[tuple[dict[str, object], bytes]] = []
    for item in ranked:
        checked = item.checked.crop
        path = set_dir / layout.CROPS_DIR / item.file_name
        _write_if_changed(out, path, item.png)
        written.add(_rel(out, path))
        record = _face_record(item.checked.face) | {
            "file": _rel(out, path),
            "pad_ratio": checked.pad_ratio,
            "recropped": checked.recropped,
            "attempts": _attempts(checked),
        }
        placed.append((record, item.png))
    placed += carried.crops
    order = sorted(
        range(len(placed)), key=lambda i: (-_composite(placed[i][0]), i >= len(ranked), i)
    )
    crops: list[dict[str, object]] = []
    members: list[tuple[str, bytes]] = []
    for rank, index in enumerate(order, start=1):
        record, png = placed[index]
        crops.append(record | {"rank": rank, "in_top": rank <= params.top_n})
        # Neutral member names: a shared bundle names no source folder (the manifest does).
        members.append((member_name(rank, png), png))

    for marker, text in target.markers:
        _write_if_changed(out, set_dir / marker, text.encode("utf-8"))
        written.add(_rel(out, set_dir / marker))

    fsz_top = set_dir / layout.FSZ_TOP_OF.format(target.bundle, params.top_n)
    fsz_all = set_dir / layout.FSZ_ALL_OF.format(target.bundle)
    fsz_files: list[str] = []
    if members:
        disk = Beneath(out)
        disk.write_bytes(_rel(out, fsz_top), fsz_bytes(members[: params.top_n]))
        disk.write_bytes(_rel(out, fsz_all), fsz_bytes(members))
        fsz_files = [_rel(out, fsz_top), _rel(out, fsz_all)]
        written.update(fsz_files)
    if progress:
        progress("fsz", 1, 1, name)

    recropped = sum(1 for c in crops if c.get("recropped") is True)
    sources = sorted({os.path.dirname(str(c["source"])) for c in crops if c.get("source")})
    composites = [_composite(c) for c in crops]
    mean_quality = round(float(np.mean(composites)), 6) if composites else 0.0
    top = min(len(crops), params.top_n)
    counts = {
        "faces": gated.faces,
        "kept": len(crops),
        "top": top,
        "recropped": recropped,
        "dropped": dict(sorted(reasons.items())),
    }
    files = sorted(written | {_rel(out, manifest_path)})
    manifest = {
        SCHEMA_KEY: SCHEMA_VERSION,  # the model maintenance jobs read it with: FacesetManifest
        "version": MANIFEST_VERSION,
        "faceset": name,
        "number": number,
        "params": {
            "top_n": params.top_n,
            "outlier_threshold": params.outlier_threshold,
            "pad_ratio": params.pad_ratio,
            "out_size": params.out_size,
            "min_face_short": params.min_face_short,
            "quality_weights": dict(settings.export().quality.weights.as_dict()),
        },
        "fsz_top": fsz_files[0] if fsz_files else None,
        "fsz_all": fsz_files[1] if fsz_files else None,
        "counts": counts,
        "mean_quality": mean_quality,
        "sources": sources,
        "crops": crops,
        "dropped": [record for _, _, record in sorted(dropped, key=lambda d: (d[0], d[1]))],
        "files": files,
    }
    person_id, person_name = target.person
    if person_id:  # a faceset seeded from a person the user named (or grouped) in Immich
        manifest.update(name=person_name, immich_person_id=person_id)
    if target.label:
        manifest["label"] = target.label  # as review's name records it
    _remove_stale(out, set_dir, previous.get("files", []), set(files))
    Beneath(out).write_json(_rel(out, manifest_path), manifest)

    entry: dict[str, object] = {
        "number": number,
        "dir": target.dir,
        "manifest": _rel(out, manifest_path),
        "fsz_top": manifest["fsz_top"],
        "fsz_all": manifest["fsz_all"],
        "counts": counts,
        "mean_quality": mean_quality,
        "sources": sources,
        "top": [c["file"] for c in crops[: params.top_n]],
        "skipped": skipped,
    }
    if target.group:
        entry["group"] = target.group
    if target.label:
        entry["label"] = target.label
    if target.markers:
        entry["markers"] = [_rel(out, set_dir / marker) for marker, _ in target.markers]
    if target.flags:
        entry["flags"] = list(target.flags)
    if person_id:  # `person`, not `name`: readers take an entry's `name` for its key
        entry.update(person=person_name, immich_person_id=person_id)
    log.info("export.faceset", faceset=name, kept=len(crops), dropped=dict(reasons))
    kept_rows = [item.checked.face.row for item in ranked]
    return _SetResult(
        number=number,
        target=target,
        entry=entry,
        faces=gated.faces,
        centroid=unit_mean(np.stack([r.embedding for r in kept_rows]))
        if kept_rows
        else gated.centroid,
        skipped=skipped,
        reasons=reasons,
        kept=len(crops),
        top=top,
        recropped=recropped,
        fsz=fsz_files,
    )


def _composite(record: Mapping[str, object]) -> float:
    value = record.get("composite")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _export_set(
    out: Path,
    number: int,
    target: SetTarget,
    rows: Sequence[FaceRow],
    params: _Params,
    load_image: LoadImage,
    count_faces: CountFaces,
    progress: ProgressFn | None,
    curation: Curation,
) -> _SetResult:
    """One faceset, step by step: gate, crop and check, collapse duplicates, rank, write. The
    faces a review or maintenance run placed (in this faceset, another, or among the dropped)
    are not cropped again; what it left in this faceset is kept (see `curation`)."""
    if target.partition != PARTITION_FACESETS:  # era buckets: the faceset's faces, as read
        curation = Curation()
    carried = curation.kept_of(target.name)
    if carried.label:  # named in review: the name, and its files' stem, as review gave them
        target = replace(target, label=carried.label, stem=bundle_name(carried.label))
    rows = [row for row in rows if row.face_id not in curation.placed]
    gated = _gate_set(rows, params)
    rejected = _rejected_drops(gated.rejected, params, load_image)
    cropped = _crop_and_check(target.name, gated.passed, params, load_image, count_faces, progress)
    kept, duplicates = _collapse_duplicates(cropped.checked)
    return _write_set(
        out,
        number,
        target,
        gated,
        _rank(kept),
        [*rejected, *cropped.dropped, *duplicates],
        cropped.skipped,
        params,
        progress,
        carried,
    )


def _retire(out: Path, entry: Mapping[str, object]) -> None:
    """Remove the files an exported set's own manifest says it wrote, and its emptied folder."""
    folder = entry.get("dir")
    manifest = entry.get("manifest")
    if not is_relative(folder) or not is_relative(manifest):
        log.warning("export.retire_path_ignored", dir=folder, manifest=manifest)
        return
    assert isinstance(folder, str) and isinstance(manifest, str)  # is_relative says so
    previous = _read_manifest(out / manifest, required=False, out=out)
    _remove_stale(out, out / folder, previous.get("files", []), set())
    for empty in (folder, parent_of(folder)):
        if empty:
            Beneath(out).rmdir(empty)


STORE_KEY = "store"  # the path of an entry's face store when it was exported (for messages)
STORE_ID_KEY = "store_id"  # its identity: another store's export of the entry is refused


@dataclass(frozen=True)
class StoreIdentity:
    """The face store an export's faces come from: its path now, and its id (kept when the
    store moves, shared by its backups)."""

    path: str
    id: str

    def __bool__(self) -> bool:
        return bool(self.id)


def _refuse_other_store(
    top_manifest: Mapping[str, object], planned: Mapping[int, SetTarget], store: StoreIdentity
) -> None:
    """ExportError when this run would replace an entry that another face store's export
    wrote (the same name in its partition, or a faceset of the same number): its crops,
    and any merge or clean-up made on them since, would be gone. Stores are told apart by id,
    so a store moved (a run's OUT renamed) still re-exports its own entries; a store made anew
    at the path the entry names (rebuilt for another model pack, say) is taken as the same
    library's; entries that record no id (exported before ids were recorded) are replaced as
    before."""
    for number, target in sorted(planned.items()):
        section = top_manifest.get(target.partition)
        if not isinstance(section, dict):
            continue
        for name, entry in section.items():
            if not isinstance(entry, dict):
                continue
            same = name == target.name or (
                target.partition == PARTITION_FACESETS and entry.get("number") == number
            )
            other = entry.get(STORE_ID_KEY)
            rebuilt = entry.get(STORE_KEY) == store.path  # a store made anew where it was
            if same and isinstance(other, str) and other and other != store.id and not rebuilt:
                raise ExportError(
                    f"{name} in this export was exported from another face store "
                    f"({entry.get(STORE_KEY) or 'path unknown'}); exporting {target.name} of "
                    f"{store.path} here would replace it. Export into a folder of its own (or "
                    "into this one from that store)"
                )


def refuse_job_output(out: Path, top_manifest: Mapping[str, object] | None = None) -> None:
    """OUT as a clustering job's output folder (arguments swapped or a folder reused): the
    export's entries went into `cluster`'s manifest.json, of the same name, which that job
    could then no longer read (its folders' ownership lost), or among refine's folders.
    `top_manifest`: OUT's manifest.json as read (read here when not given)."""
    if top_manifest is None:
        try:
            top_manifest = _read_manifest(out / layout.EXPORT_MANIFEST, required=False, out=out)
        except SymlinkRefusedError:
            return  # refused where the export writes, with its own words
    command = written_by(top_manifest)
    if not command and Beneath(out).exists(layout.REFINE_MANIFEST):
        command = "refine"
    if command and command != "export-swap":
        raise ExportError(
            f"{out} holds the output of `facesets {command}`, not an export; export into a "
            "folder of its own"
        )


def _refuse_split_clash(out: Path, targets: Sequence[SetTarget], curation: Curation) -> None:
    """A faceset a review split made took the next free number; a plan that numbers another
    identity so since (route's new facesets) would put both people in one folder."""
    made = curation.split_made
    clashes = [t.name for t in targets if t.partition == PARTITION_FACESETS and t.name in made]
    if clashes:
        name = clashes[0]
        raise ExportError(
            f"{name} in {out} was made in review (split from {made[name]}), and the plan's "
            f"{name} is another set of faces: exporting would mix them in one faceset. Restore "
            f"the split (`facesets restore {out} --faceset {name}`: its crops go back to "
            f"{made[name]}) and export again, or export into another folder"
            + (f" (also: {', '.join(clashes[1:])})" if clashes[1:] else "")
        )


SAME_PERSON_SHARE = 0.5  # of a curated faceset's exported faces the plan's must still hold


def _refuse_another_person(
    out: Path, planned: Mapping[SetTarget, Sequence[FaceRow]], curation: Curation
) -> None:
    """The plan's faceset_003 may be another person than the export's (a plan of another refine
    output, or a refine where that person's faces went apart: refine keeps a number only for
    the faceset holding most of its faces). Where the export's faceset carries decisions (a
    name, crops a merge brought in, drops), those would be put on the other person: refused
    unless the plan's faceset still holds most of the faces the export made it with."""
    for target, rows in planned.items():
        carried = curation.sets.get(target.name)
        if target.partition != PARTITION_FACESETS or carried is None or not carried.exported:
            continue
        held = {row.face_id for row in rows} & carried.exported
        if len(held) >= SAME_PERSON_SHARE * len(carried.exported):
            continue
        raise ExportError(
            f"{target.name} in {out} holds decisions made in review or maintenance, and the "
            f"plan's {target.name} holds {len(held)} of the {len(carried.exported)} faces it was "
            "exported with: another person. Export this plan into another folder, or fold new "
            "faces into the facesets with `facesets extend` (or an Immich import's routing)"
        )


def _merge_entries(
    out: Path, top_manifest: Mapping[str, object], results: Sequence[_SetResult]
) -> dict[str, object]:
    """The top-level manifest with this run's entries in their partitions.

    An entry of a group this run exported that it no longer lists (or lists under another
    partition or folder) leaves its partition, and its old folder is removed; so does a faceset
    whose number this run exported under another name.
    """
    merged: dict[str, object] = dict(top_manifest)
    groups = {r.target.group for r in results if r.target.group}
    current = {(r.target.partition, r.target.name): r.target.dir for r in results}
    dirs = set(current.values())
    for key, section in list(merged.items()):
        if not groups or not isinstance(section, dict):
            continue
        for name, entry in list(section.items()):
            if not isinstance(entry, dict) or entry.get("group") not in groups:
                continue
            if (key, name) in current and current[(key, name)] == entry.get("dir"):
                continue
            if entry.get("dir") not in dirs:
                _retire(out, entry)
            del section[name]
    # A faceset number exported under a new name (a person renamed): its old entry retires.
    renamed = {r.number: r.target.name for r in results if r.target.partition == PARTITION_FACESETS}
    section = merged.get(PARTITION_FACESETS)
    for name, entry in list(section.items() if isinstance(section, dict) else ()):
        number = entry.get("number") if isinstance(entry, dict) else None
        if number in renamed and renamed[number] != name and isinstance(section, dict):
            if entry.get("dir") not in dirs:
                _retire(out, entry)
            del section[name]
    for result in results:  # this run's entries replace theirs
        earlier = merged.get(result.target.partition)
        section = dict(earlier) if isinstance(earlier, dict) else {}
        section[result.target.name] = result.entry
        merged[result.target.partition] = dict(sorted(section.items()))
    merged["version"] = MANIFEST_VERSION
    merged[SCHEMA_KEY] = SCHEMA_VERSION  # the model the other jobs read it with: ExportManifest
    merged.setdefault(PARTITION_FACESETS, {})
    return merged


# --- candidates -------------------------------------------------------------------------------


class CandidateSection(TypedDict):
    """The top-level manifest's `candidates`: singleton faces cropped for review."""

    params: dict[str, float]
    considered: int
    items: list[dict[str, object]]  # face_id, source, nearest, distance, scores, file ...
    dropped: list[dict[str, object]]  # the same, with the reason instead of the file
    skipped: list[Skipped]
    files: list[str]


def _export_candidates(
    out: Path,
    candidates: Sequence[FaceRow],
    results: Sequence[_SetResult],
    taken: set[int],
    params: _Params,
    match_threshold: float,
    min_score: float,
    load_image: LoadImage,
    count_faces: CountFaces,
    previous: object,  # the candidates section an earlier run wrote (anything, if edited)
    progress: ProgressFn | None,
) -> CandidateSection:
    """Singleton faces close to a faceset's centroid, cropped for a person to review."""
    cand_dir = out / layout.CANDIDATES_DIR
    anchors = [(r.number, r.centroid) for r in results if r.centroid is not None]
    chosen: list[tuple[FaceRow, int, float, QualityScores]] = []
    if anchors:
        centroids = np.stack([c for _, c in anchors])
        for row in sorted({r.face_id: r for r in candidates}.values(), key=lambda r: r.face_id):
            if row.face_id in taken or row.face_short < params.min_face_short:
                continue
            distances = 1.0 - centroids @ row.embedding
            best = int(np.argmin(distances))
            if distances[best] > match_threshold:
                continue
            scores = quality_scores(row)
            if scores.composite < min_score:
                continue
            chosen.append((row, anchors[best][0], float(distances[best]), scores))

    items: list[tuple[tuple[str, float, int], dict[str, object]]] = []  # (sort key, item)
    dropped: list[dict[str, object]] = []
    skipped: list[Skipped] = []
    written: set[str] = set()
    batch = max(1, settings.export().crops.check_batch)
    for start in range(0, len(chosen), batch):
        chunk = chosen[start : start + batch]
        cache: dict[str, np.ndarray] = {}
        loaded = []
        for row, number, distance, scores in chunk:
            try:
                loaded.append((row, number, distance, scores, _load(row, load_image, cache)))
            except LookupError as exc:
                skipped.append({"face_id": row.face_id, "source": row.path, "error": str(exc)})
        checks = checked_crops(
            [(item[4], item[0].bbox) for item in loaded],
            count_faces,
            pad_ratio=params.pad_ratio,
            out_size=params.out_size,
        )
        for (row, number, distance, scores, _), checked in zip(loaded, checks, strict=True):
            nearest, rounded = faceset_name(number), round(distance, 6)
            record: dict[str, object] = {
                "face_id": row.face_id,
                "source": row.path,
                "nearest": nearest,
                "distance": rounded,
                "scores": {k: v for k, v in scores.as_dict().items() if k != "composite"},
                "composite": round(scores.composite, 6),
                "attempts": _attempts(checked),
            }
            if checked.image is None:
                dropped.append(record | {"reason": checked.reason})
                continue
            path = cand_dir / f"{faceset_name(number)}__{crop_name(row)}"
            _write_if_changed(out, path, encode_png(checked.image))
            written.add(_rel(out, path))
            items.append(
                (
                    (nearest, rounded, row.face_id),
                    record | {"file": _rel(out, path), "pad_ratio": checked.pad_ratio},
                )
            )
        if progress:
            progress("candidates", min(start + batch, len(chosen)), len(chosen), "")
    earlier = previous.get("files", []) if isinstance(previous, dict) else []
    _remove_stale(out, cand_dir, earlier, written)
    return {
        "params": {"match_threshold": match_threshold, "min_score": min_score},
        "considered": len(candidates),
        "items": [item for _, item in sorted(items, key=lambda i: i[0])],
        "dropped": dropped,
        "skipped": skipped,
        "files": sorted(written),
    }


# --- look-alikes ------------------------------------------------------------------------------


def _lookalike_section(
    pairs: Sequence[LookalikePair], facesets: Mapping[str, Mapping[str, object]]
) -> list[dict[str, object]]:
    """Refine's look-alike pairs with a few top crops of each faceset, for the report."""

    def top(name: str) -> list[object]:
        crops = facesets.get(name, {}).get("top", [])
        return (
            list(crops)[: settings.export().crops.lookalike_crops]
            if isinstance(crops, list)
            else []
        )

    return [pair.to_json() | {"crops": {n: top(n) for n in pair.facesets}} for pair in pairs]


# --- the job ----------------------------------------------------------------------------------


def export_swap(
    faces_by_set: Mapping[int, Sequence[FaceRow]],
    out: Path,
    parameters: ExportSwapParams | None = None,
    *,
    load_image: LoadImage,
    count_faces: CountFaces,
    candidates: Sequence[FaceRow] | None = None,
    progress: ProgressFn | None = None,
    gates: Mapping[str, object] | None = None,
    lookalikes: Sequence[LookalikePair] | None = None,
    targets: Mapping[int, SetTarget] | None = None,
    disagreements: Sequence[Mapping[str, object]] | None = None,
    disagreement_rows: Mapping[int, FaceRow] | None = None,
    store: StoreIdentity | None = None,
) -> dict[str, object]:
    """Export every faceset of `faces_by_set` (faceset number → its faces) into `out`.

    `lookalikes` (refine's pairs of facesets that share a photo yet lie close) go into the
    top-level manifest under `lookalikes`, each with a few top crops of both facesets.

    Returns the run's summary; the merged top-level manifest is OUT/manifest.json. `gates`
    (refine's per-gate counts, facesets.contract.gates) go into it for the report. `targets`
    places sets elsewhere than faceset_NNN (era buckets); a set's group replaces the entries
    an earlier run exported for that group, and retires the folders of those it no longer has.
    A source photo that cannot be read is skipped and reported, never fatal. `store`: the
    face store the faces come from, recorded in each entry; an entry of another store that
    this run would replace is refused before anything is written (see `_refuse_other_store`).
    """
    # ExportSwapParams holds every value within its range (checked when it is made).
    p = parameters or ExportSwapParams()
    top_n, outlier_threshold, pad_ratio = p.top_n, p.outlier_threshold, p.pad_ratio
    out_size, min_face_short = p.out_size, p.min_face_short
    candidate_centroid_threshold, candidate_min_score = (
        p.candidate_match_threshold,
        p.candidate_min_score,
    )
    for number in faces_by_set:
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ExportError(f"faceset numbers must be non-negative integers, not {number!r}")

    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    # A faceset, faces/ or report/ linked elsewhere would take this run's files (and its
    # clean-up) out of OUT: refused before anything is written.
    Beneath(out).refuse_links()
    # A maintenance run a crash cut short is rolled back first, as every maintenance and
    # report job does: its rollback, run later by one of those, would undo this export's work.
    journal.recover(out)
    top_path = out / layout.EXPORT_MANIFEST
    top_manifest = _read_manifest(top_path, required=True, out=out)  # before anything is written
    refuse_job_output(out, top_manifest)
    planned = {n: (targets or {}).get(n) or SetTarget.faceset(n) for n in faces_by_set}
    if store:
        _refuse_other_store(top_manifest, planned, store)
    params = _Params(top_n, outlier_threshold, pad_ratio, out_size, min_face_short)
    curation = read_curation(out, top_manifest)
    # A faceset a run merged into another or set aside as masked stays where it went.
    aside = {
        number: curation.aside[target.name]
        for number, target in planned.items()
        if target.partition == PARTITION_FACESETS and target.name in curation.aside
    }

    results: list[_SetResult] = []
    numbers = sorted(n for n in faces_by_set if n not in aside)
    _refuse_split_clash(out, [planned[n] for n in numbers], curation)
    _refuse_another_person(out, {planned[n]: faces_by_set[n] for n in numbers}, curation)
    for done, number in enumerate(numbers, start=1):
        results.append(
            _export_set(
                out,
                number,
                planned[number],
                faces_by_set[number],
                params,
                load_image,
                count_faces,
                progress,
                curation,
            )
        )
        if progress:
            progress("facesets", done, len(numbers), faceset_name(number))

    if store:
        for result in results:
            result.entry[STORE_KEY] = store.path
            result.entry[STORE_ID_KEY] = store.id
    merged = _merge_entries(out, top_manifest, results)
    if gates:
        merged["gates"] = dict(gates)
    if lookalikes is not None:
        exported = merged[PARTITION_FACESETS]
        merged["lookalikes"] = _lookalike_section(
            lookalikes, exported if isinstance(exported, dict) else {}
        )
    if disagreements is not None or top_manifest.get(immich.DISAGREEMENTS_KEY):
        merged[immich.DISAGREEMENTS_KEY] = immich.write_section(
            out,
            disagreements or [],
            disagreement_rows or {},
            load_image,
            top_manifest.get(immich.DISAGREEMENTS_KEY),
            pad_ratio,
        )
    candidate_section: CandidateSection | None = None
    if candidates is not None:
        taken = {row.face_id for rows in faces_by_set.values() for row in rows}
        candidate_section = _export_candidates(
            out,
            candidates,
            results,
            taken,
            params,
            candidate_centroid_threshold,
            candidate_min_score,
            load_image,
            count_faces,
            top_manifest.get("candidates") or {},
            progress,
        )
        merged["candidates"] = candidate_section
    Beneath(out).write_json(layout.EXPORT_MANIFEST, merged)

    reasons: Counter[str] = Counter()
    for result in results:
        reasons.update(result.reasons)
    skipped = [item for result in results for item in result.skipped]
    if candidate_section:
        skipped += [
            item | {"faceset": layout.CANDIDATES_DIR} for item in candidate_section["skipped"]
        ]
    shown = merged.get(immich.DISAGREEMENTS_KEY)
    summary: dict[str, object] = {
        "out": str(out),
        "manifest": str(top_path),
        "facesets": len(results),
        "faces": sum(r.faces for r in results),
        "kept": sum(r.kept for r in results),
        "top": sum(r.top for r in results),
        "recropped": sum(r.recropped for r in results),
        "dropped": dict(sorted(reasons.items())),
        "skipped_sources": skipped,
        "candidates": len(candidate_section["items"]) if candidate_section else 0,
        "fsz": [str(out / rel) for r in results for rel in r.fsz],
        "gates": merged.get("gates", {}),
        # What review and maintenance runs decided, kept: facesets not exported again (each
        # with the partition it is in: restore it to export it again), crops and drops kept.
        "kept_aside": {planned[n].name: aside[n] for n in sorted(aside)},
        "curated_kept": {
            "crops": sum(len(curation.kept_of(r.target.name).crops) for r in results),
            "dropped": sum(len(curation.kept_of(r.target.name).dropped) for r in results),
        },
        **(
            {immich.DISAGREEMENTS_KEY: len(shown) if isinstance(shown, list) else 0}
            if immich.DISAGREEMENTS_KEY in merged
            else {}
        ),
    }
    log.info(
        "export.done", facesets=summary["facesets"], kept=summary["kept"], skipped=len(skipped)
    )
    return summary
