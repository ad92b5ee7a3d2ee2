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

import contextlib
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog

from facesets.common import layout, settings
from facesets.export.crops import (
    CheckedCrop,
    CountFaces,
    checked_crops,
    crop_square,
    encode_png,
    hamming,
    phash,
)
from facesets.export.fsz import write_fsz
from facesets.export.quality import QualityScores, quality_scores
from facesets.export.records import FaceRow

log = structlog.get_logger(__name__)

LoadImage = Callable[[str], np.ndarray]
ProgressFn = Callable[[str, int, int, str], None]  # stage, done, total, message

MANIFEST_VERSION = 1
REASON_SMALL = "small"
REASON_OUTLIER = "outlier"
REASON_DUPLICATE = "duplicate"
REASON_UNREADABLE = "unreadable"
SAME_FACE_IOU = 0.5  # boxes of one photo overlapping this much are the same face
MAX_NAME_BYTES = 200  # file names stay under common 255-byte limits with room for prefixes


class ExportError(RuntimeError):
    """The export cannot run as asked (bad parameters, an unreadable manifest in OUT)."""


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


def _rel(out: Path, path: Path) -> str:
    return path.relative_to(out).as_posix()


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _unit(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic write, skipped when the file already holds these bytes (idempotent re-runs)."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    layout.atomic_write_bytes(path, data)


def _read_manifest(path: Path, *, required: bool) -> dict[str, Any]:
    """A manifest export wrote earlier; {} when absent.

    An unreadable top-level manifest stops the export (merging would lose its entries);
    an unreadable per-faceset one only costs the clean-up of that faceset's stale files.
    """
    try:
        payload = layout.read_json(path, default={})
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


def _remove_stale(out: Path, owned_root: Path, previous: Sequence[str], written: set[str]) -> int:
    """Delete files the previous run wrote under owned_root that this run did not write."""
    removed = 0
    root = owned_root.resolve()
    if not isinstance(previous, list):  # a hand-edited manifest: own nothing rather than guess
        previous = []
    for rel in previous:
        if not isinstance(rel, str) or rel in written:
            continue
        target = (out / rel).resolve()
        if not target.is_relative_to(root) or target == root:
            log.warning("export.stale_path_ignored", path=rel)
            continue
        if target.is_file():
            target.unlink()
            removed += 1
    for folder in sorted(
        {(out / rel).parent for rel in previous if isinstance(rel, str)},
        key=lambda p: len(p.parts),
        reverse=True,
    ):
        # Folders export created and left empty go too; a folder holding anything stays.
        resolved = folder.resolve()
        if resolved.is_relative_to(root) and resolved != root and resolved.is_dir():
            with contextlib.suppress(OSError):
                resolved.rmdir()
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
    entry: dict[str, Any]  # the top-level manifest entry
    centroid: np.ndarray | None
    skipped: list[dict[str, Any]] = field(default_factory=list)
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
        first = _unit(matrix)
        near = 1.0 - matrix @ first <= params.outlier_threshold
        centroid = _unit(matrix[near]) if near.any() else first
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
            image = load_image(path)
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
            if other.sha256 == row.sha256 and _iou(other.bbox, row.bbox) > SAME_FACE_IOU:
                return other
        if not self.faces:
            return None
        sims = np.stack([f.embedding for f in self.faces]) @ row.embedding
        for index in np.flatnonzero(sims >= settings.EXPORT_DUPLICATE_SIM):
            if hamming(self.hashes[index], crop_hash) <= settings.EXPORT_DUPLICATE_HASH_BITS:
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
    return copy.face_short >= kept.face_short * settings.EXPORT_DUPLICATE_PREFER_LARGER


def _face_record(face: _Face) -> dict[str, Any]:
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


def _export_set(
    out: Path,
    number: int,
    rows: Sequence[FaceRow],
    params: _Params,
    load_image: LoadImage,
    count_faces: CountFaces,
    progress: ProgressFn | None,
) -> _SetResult:
    name = faceset_name(number)
    set_dir = out / name
    crops_dir = set_dir / layout.CROPS_DIR
    rejected_dir = set_dir / layout.REJECTED_DIR
    manifest_path = set_dir / layout.FACESET_MANIFEST
    previous = _read_manifest(manifest_path, required=False)
    written: set[str] = set()

    unique: dict[int, FaceRow] = {}
    for row in rows:
        unique.setdefault(row.face_id, row)
    passed, rejected, centroid = _gate(list(unique.values()), params)
    dropped: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    skipped: list[dict[str, Any]] = []

    def drop(face: _Face, reason: str, detail: str, thumb: np.ndarray | None) -> None:
        record = _face_record(face) | {"reason": reason, "detail": detail}
        if thumb is not None:
            path = rejected_dir / crop_name(face.row)
            size = settings.EXPORT_REJECTED_SIZE
            small = cv2.resize(thumb, (size, size), interpolation=cv2.INTER_AREA)
            _write_if_changed(path, encode_png(small))
            written.add(_rel(out, path))
            record["thumbnail"] = _rel(out, path)
        dropped.append(record)
        reasons[reason] += 1

    # Rejected faces get a review thumbnail when their photo can still be read.
    cache: dict[str, np.ndarray] = {}
    for face, reason, detail in rejected:
        try:
            image = _load(face.row, load_image, cache)
            thumb = crop_square(image, face.row.bbox, params.pad_ratio, params.out_size)
        except (LookupError, ValueError):
            thumb = None
        drop(face, reason, detail, thumb)
        cache.clear()

    kept: list[tuple[_Face, CheckedCrop, str]] = []
    index = _DuplicateIndex()
    total = len(passed)
    batch = max(1, settings.EXPORT_CHECK_BATCH)
    for start in range(0, total, batch):
        chunk = passed[start : start + batch]
        cache = {}
        loaded: list[tuple[_Face, np.ndarray]] = []
        for face in chunk:
            try:
                loaded.append((face, _load(face.row, load_image, cache)))
            except LookupError as exc:
                detail = str(exc)
                drop(face, REASON_UNREADABLE, detail, None)
                skipped.append(
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
                drop(face, checked.reason, f"faces found: {found}", checked.last)
                dropped[-1]["attempts"] = _attempts(checked)
                continue
            crop_hash = phash(crop_square(image, face.row.bbox, params.pad_ratio, 64))
            twin = index.find(face.row, crop_hash)
            if twin is not None and _prefer(face.row, twin):
                position = next(i for i, k in enumerate(kept) if k[0].row is twin)
                replaced, replaced_check, _ = kept.pop(position)
                index.remove(twin)
                drop(
                    replaced,
                    REASON_DUPLICATE,
                    f"smaller copy of face {face.row.face_id} ({face.row.path})",
                    replaced_check.image,
                )
            elif twin is not None:
                drop(
                    face,
                    REASON_DUPLICATE,
                    f"copy of face {twin.face_id} ({twin.path})",
                    checked.image,
                )
                continue
            index.add(face.row, crop_hash)
            kept.append((face, checked, crop_name(face.row)))
        cache.clear()
        if progress:
            progress("crop", min(start + batch, total), total, name)

    crops: list[dict[str, Any]] = []
    members: list[tuple[str, bytes]] = []
    for rank, (face, checked, file_name) in enumerate(kept, start=1):
        assert checked.image is not None
        data = encode_png(checked.image)
        path = crops_dir / file_name
        _write_if_changed(path, data)
        written.add(_rel(out, path))
        members.append((file_name, data))
        crops.append(
            _face_record(face)
            | {
                "file": _rel(out, path),
                "rank": rank,
                "in_top": rank <= params.top_n,
                "pad_ratio": checked.pad_ratio,
                "recropped": checked.recropped,
                "attempts": _attempts(checked),
            }
        )

    fsz_top = set_dir / layout.FSZ_TOP.format(number, params.top_n)
    fsz_all = set_dir / layout.FSZ_ALL.format(number)
    fsz_files: list[str] = []
    if members:
        write_fsz(fsz_top, members[: params.top_n])
        write_fsz(fsz_all, members)
        fsz_files = [_rel(out, fsz_top), _rel(out, fsz_all)]
        written.update(fsz_files)
    if progress:
        progress("fsz", 1, 1, name)

    recropped = sum(1 for c in crops if c["recropped"])
    sources = sorted({os.path.dirname(c["source"]) for c in crops})
    mean_quality = round(float(np.mean([c["composite"] for c in crops])), 6) if crops else 0.0
    counts = {
        "faces": len(unique),
        "kept": len(crops),
        "top": min(len(crops), params.top_n),
        "recropped": recropped,
        "dropped": dict(sorted(reasons.items())),
    }
    files = sorted(written | {_rel(out, manifest_path)})
    manifest = {
        "version": MANIFEST_VERSION,
        "faceset": name,
        "number": number,
        "params": {
            "top_n": params.top_n,
            "outlier_threshold": params.outlier_threshold,
            "pad_ratio": params.pad_ratio,
            "out_size": params.out_size,
            "min_face_short": params.min_face_short,
            "quality_weights": dict(settings.QUALITY_WEIGHTS),
        },
        "fsz_top": fsz_files[0] if fsz_files else None,
        "fsz_all": fsz_files[1] if fsz_files else None,
        "counts": counts,
        "mean_quality": mean_quality,
        "sources": sources,
        "crops": crops,
        "dropped": sorted(dropped, key=lambda d: (d["reason"], d["face_id"])),
        "files": files,
    }
    _remove_stale(out, set_dir, previous.get("files", []), set(files))
    layout.atomic_write_json(manifest_path, manifest)

    entry = {
        "number": number,
        "dir": name,
        "manifest": _rel(out, manifest_path),
        "fsz_top": manifest["fsz_top"],
        "fsz_all": manifest["fsz_all"],
        "counts": counts,
        "mean_quality": mean_quality,
        "sources": sources,
        "top": [c["file"] for c in crops[: params.top_n]],
        "skipped": skipped,
    }
    log.info("export.faceset", faceset=name, kept=len(crops), dropped=dict(reasons))
    return _SetResult(
        number=number,
        entry=entry,
        centroid=_unit(np.stack([f.row.embedding for f, _, _ in kept])) if kept else centroid,
        skipped=skipped,
        reasons=reasons,
        kept=len(crops),
        top=counts["top"],
        recropped=recropped,
        fsz=fsz_files,
    )


# --- candidates -------------------------------------------------------------------------------


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
    previous: Mapping[str, Any],
    progress: ProgressFn | None,
) -> dict[str, Any]:
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

    items: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    written: set[str] = set()
    batch = max(1, settings.EXPORT_CHECK_BATCH)
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
            record = {
                "face_id": row.face_id,
                "source": row.path,
                "nearest": faceset_name(number),
                "distance": round(distance, 6),
                "scores": {k: v for k, v in scores.as_dict().items() if k != "composite"},
                "composite": round(scores.composite, 6),
                "attempts": _attempts(checked),
            }
            if checked.image is None:
                dropped.append(record | {"reason": checked.reason})
                continue
            path = cand_dir / f"{faceset_name(number)}__{crop_name(row)}"
            _write_if_changed(path, encode_png(checked.image))
            written.add(_rel(out, path))
            items.append(record | {"file": _rel(out, path), "pad_ratio": checked.pad_ratio})
        if progress:
            progress("candidates", min(start + batch, len(chosen)), len(chosen), "")
    _remove_stale(out, cand_dir, previous.get("files", []), written)
    return {
        "params": {"match_threshold": match_threshold, "min_score": min_score},
        "considered": len(candidates),
        "items": sorted(items, key=lambda i: (i["nearest"], i["distance"], i["face_id"])),
        "dropped": dropped,
        "skipped": skipped,
        "files": sorted(written),
    }


# --- the job ----------------------------------------------------------------------------------


def export_swap(
    faces_by_set: Mapping[int, Sequence[FaceRow]],
    out: Path,
    *,
    load_image: LoadImage,
    count_faces: CountFaces,
    top_n: int = settings.EXPORT_TOP_N,
    outlier_threshold: float = settings.EXPORT_OUTLIER_THRESHOLD,
    pad_ratio: float = settings.EXPORT_PAD_RATIO,
    out_size: int = settings.EXPORT_OUT_SIZE,
    min_face_short: float = settings.EXPORT_MIN_FACE_SHORT,
    candidates: Sequence[FaceRow] | None = None,
    candidate_centroid_threshold: float = settings.CANDIDATE_MATCH_THRESHOLD,
    candidate_min_score: float = settings.CANDIDATE_MIN_SCORE,
    progress: ProgressFn | None = None,
    gates: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export every faceset of `faces_by_set` (faceset number → its faces) into `out`.

    Returns the run's summary; the merged top-level manifest is OUT/manifest.json. `gates`
    (refine's per-gate counts, facesets.common.gates) go into it for the report.
    A source photo that cannot be read is skipped and reported, never fatal.
    """
    if top_n < 1:
        raise ExportError(f"top_n must be at least 1, not {top_n}")
    if out_size < 16:
        raise ExportError(f"out_size must be at least 16 pixels, not {out_size}")
    if not 0.0 <= pad_ratio <= 2.0:
        raise ExportError(f"pad_ratio must lie in [0, 2], not {pad_ratio}")
    if not 0.0 < outlier_threshold <= 2.0:
        raise ExportError(f"outlier_threshold must lie in (0, 2], not {outlier_threshold}")
    for number in faces_by_set:
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ExportError(f"faceset numbers must be non-negative integers, not {number!r}")

    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    top_path = out / layout.EXPORT_MANIFEST
    top_manifest = _read_manifest(top_path, required=True)  # before anything is written
    params = _Params(top_n, outlier_threshold, pad_ratio, out_size, min_face_short)

    results: list[_SetResult] = []
    numbers = sorted(faces_by_set)
    for done, number in enumerate(numbers, start=1):
        results.append(
            _export_set(
                out, number, faces_by_set[number], params, load_image, count_faces, progress
            )
        )
        if progress:
            progress("facesets", done, len(numbers), faceset_name(number))

    facesets = dict(top_manifest.get("facesets") or {})
    for result in results:
        facesets[faceset_name(result.number)] = result.entry  # this run's entries replace theirs
    merged: dict[str, Any] = dict(top_manifest) | {
        "version": MANIFEST_VERSION,
        "facesets": dict(sorted(facesets.items())),
    }
    if gates:
        merged["gates"] = dict(gates)
    candidate_section: dict[str, Any] | None = None
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
    layout.atomic_write_json(top_path, merged)

    reasons: Counter[str] = Counter()
    for result in results:
        reasons.update(result.reasons)
    skipped = [item for result in results for item in result.skipped]
    if candidate_section:
        skipped += [
            item | {"faceset": layout.CANDIDATES_DIR} for item in candidate_section["skipped"]
        ]
    summary = {
        "out": str(out),
        "manifest": str(top_path),
        "facesets": len(results),
        "faces": sum(r.entry["counts"]["faces"] for r in results),
        "kept": sum(r.kept for r in results),
        "top": sum(r.top for r in results),
        "recropped": sum(r.recropped for r in results),
        "dropped": dict(sorted(reasons.items())),
        "skipped_sources": skipped,
        "candidates": len(candidate_section["items"]) if candidate_section else 0,
        "fsz": [str(out / rel) for r in results for rel in r.fsz],
        "gates": merged.get("gates", {}),
    }
    log.info(
        "export.done", facesets=summary["facesets"], kept=summary["kept"], skipped=len(skipped)
    )
    return summary
