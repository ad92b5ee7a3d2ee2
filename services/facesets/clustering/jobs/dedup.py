"""`dedup`: byte-identical and visually near-duplicate photos of a store, reported in
<store>.duplicates.json. Nothing is deleted or moved.

Near-duplicates are the same picture re-encoded, resized or lightly cropped. A whole-image hash
of fixed geometry cannot tell those from another photo of the same scene: on LFW a 5% one-sided
crop moves a centre-region DCT hash farther (cosine distance 0.2) than two different photos of
the same person sit apart (down to 0.05). So the decision is made on the photos themselves,
once they are brought into register:

1. Candidates. Photos with faces pair up when they share a face at cosine similarity >=
   face_similarity (on LFW re-encoded, resized and cropped copies keep their main face at
   >= 0.97, different photos of one person reach 0.94). Not every face has to match: background
   faces of 20-40 px embed too unreliably once a photo is halved. Faceless photos pair up by a
   DCT hash of their central region within a loose distance.
2. Registration. A similarity transform between the two photos is estimated from ORB feature
   matches (RANSAC) and, for photos with faces, from the matched faces' keypoints. A wrong
   transform cannot pass step 3, so a few agreeing matches are enough to try one.
3. Decision. The larger photo and the other one warped onto it are compared at 96 px (grey,
   slightly blurred, zero mean) over their overlap: near-duplicates lie within near_threshold of
   cosine distance and overlap most of the larger photo. On LFW copies measure <= 0.05, different
   photos of the same person >= 0.13.

Groups are the connected pairs; each names the member to keep (most pixels, then bytes).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog
from PIL import Image, ImageOps

from facesets.clustering import linkage
from facesets.clustering.jobs.context import ClusteringJob, JobContext
from facesets.clustering.jobs.job import (
    JobOutcome,
    Photos,
    ProgressFn,
    model_identity,
    normalise,
    open_faces,
    report,
    store_identity,
)
from facesets.clustering.jobs.materialize import write_json_if_changed
from facesets.clustering.store import FaceStore, FaceTable
from facesets.common.decode import DecodeError, open_image
from facesets.common.roots import Roots, open_regular
from facesets.contract import layout
from facesets.contract.clustering import DedupParams
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)

Evidence = dict[str, float | int | str]  # how a near-duplicate pair was confirmed

ALIGN_SIDE = 256  # long side of the grey image ORB matches on
COMPARE_SIDE = 96  # long side at which aligned photos are compared
COMPARE_BLUR = 1.0  # Gaussian sigma at COMPARE_SIDE, against resampling and JPEG noise
HASH_SIDE = 32  # DCT hash: grey thumbnail side ...
HASH_KEEP = 8  # ... of which the lowest 8x8 frequencies (DC left out) are kept
HASH_REGION = 0.8  # central share of each side the hash looks at
CACHE_PHOTOS = 512  # decoded photos kept while verifying pairs


@dataclass(frozen=True)
class Loaded:
    grey: np.ndarray  # uint8, long side ALIGN_SIDE
    scale: float  # ALIGN_SIDE pixels per oriented full-image pixel
    keypoints: tuple[Any, ...]
    descriptors: np.ndarray | None


class ChangedPhoto(ValueError):
    """The file at a photo's path is no longer the photo embedded (its sha256)."""


def _open_grey(path: str, side: int, sha256: str) -> tuple[np.ndarray, float]:
    """Grey image (EXIF orientation applied) with long side `side`, and its scale; only while
    the file is still the photo embedded under `sha256` (another photo there since would be
    judged a duplicate, or not, in its place)."""
    with open_regular(Path(path)) as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ChangedPhoto("changed since it was embedded")
    with open_image(data) as img:
        width, height = img.size
        if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            width, height = height, width
        img.draft("L", (2 * side, 2 * side))  # JPEG: decode at a reduced scale
        grey = ImageOps.exif_transpose(img).convert("L")
        scale = side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = grey.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(grey, dtype=np.uint8), scale


def _unusable(photos: Photos, path: str, error: Exception) -> None:
    """A photo that could not be compared: logged; one changed since embed (same size, other
    bytes) is reported with the changed paths, in the summary and the report."""
    log.warning("cannot read photo", path=path, error=str(error))
    if isinstance(error, ChangedPhoto) and path not in photos.changed_paths:
        photos.changed_paths.append(path)


def dct_hash(path: str, sha256: str) -> np.ndarray:
    """Low-frequency DCT of the central region, unit length: a coarse whole-image hash."""
    grey, _ = _open_grey(path, 4 * HASH_SIDE, sha256)
    h, w = grey.shape
    mh, mw = round(h * (1 - HASH_REGION) / 2), round(w * (1 - HASH_REGION) / 2)
    centre = grey[mh : h - mh or h, mw : w - mw or w].astype(np.float32)
    small = cv2.resize(centre, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA)
    coefficients = cv2.dct(small)[:HASH_KEEP, :HASH_KEEP].flatten()[1:]
    norm = float(np.linalg.norm(coefficients))
    return coefficients / norm if norm > 0 else coefficients


class _Verifier:
    def __init__(self, photos: Photos, near_threshold: float, min_overlap: float, min_inliers: int):
        self.photos = photos
        self.near_threshold = near_threshold
        self.min_overlap = min_overlap
        self.min_inliers = min_inliers
        self.orb = cv2.ORB.create(nfeatures=500, edgeThreshold=15, patchSize=15)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self.load = functools.lru_cache(maxsize=CACHE_PHOTOS)(self._load)

    def _load(self, sha: str) -> Loaded | None:
        for path in self.photos.existing.get(sha, []):
            try:
                grey, scale = _open_grey(path, ALIGN_SIDE, sha)
            except (OSError, ValueError, DecodeError) as exc:
                _unusable(self.photos, path, exc)
                continue
            keypoints, descriptors = self.orb.detectAndCompute(grey, None)
            return Loaded(grey, scale, tuple(keypoints), descriptors)
        return None

    def _orb_transform(self, moving: Loaded, fixed: Loaded) -> tuple[np.ndarray | None, int]:
        if moving.descriptors is None or fixed.descriptors is None:
            return None, 0
        matches = self.matcher.match(moving.descriptors, fixed.descriptors)
        if len(matches) < self.min_inliers:
            return None, 0
        src = np.array([moving.keypoints[m.queryIdx].pt for m in matches], np.float32)
        dst = np.array([fixed.keypoints[m.trainIdx].pt for m in matches], np.float32)
        transform, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0
        )
        count = int(inliers.sum()) if inliers is not None else 0
        return (transform if count >= self.min_inliers else None), count

    def distance(self, moving: Loaded, fixed: Loaded, transform: np.ndarray) -> tuple[float, float]:
        """Cosine distance of the zero-mean aligned photos over their overlap, and the overlap."""
        c = COMPARE_SIDE / ALIGN_SIDE

        def small(grey: np.ndarray) -> np.ndarray:
            h, w = grey.shape
            size = (max(1, round(w * c)), max(1, round(h * c)))
            return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)

        a, b = small(fixed.grey), small(moving.grey)
        t = transform.astype(np.float64).copy()
        t[:, 2] *= c
        h, w = a.shape
        warped = cv2.warpAffine(b, t, (w, h), flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(np.ones_like(b), t, (w, h), flags=cv2.INTER_NEAREST) > 0.5
        inside = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        overlap = float(inside.mean())
        if inside.sum() < 16:
            return 2.0, overlap
        x = cv2.GaussianBlur(a, (0, 0), COMPARE_BLUR)[inside]
        y = cv2.GaussianBlur(warped, (0, 0), COMPARE_BLUR)[inside]
        x -= x.mean()
        y -= y.mean()
        denominator = float(np.sqrt((x @ x) * (y @ y)))
        if denominator == 0:
            return 0.0 if float(x @ x) == float(y @ y) else 2.0, overlap
        return 1.0 - float(x @ y) / denominator, overlap

    def verify(
        self, fixed_sha: str, moving_sha: str, kps_pairs: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> Evidence | None:
        """The evidence that moving_sha is a near-duplicate of fixed_sha, or None."""
        fixed, moving = self.load(fixed_sha), self.load(moving_sha)
        if fixed is None or moving is None:
            return None
        # ORB first; the faces' keypoints where ORB finds no transform the pixels confirm.
        registrations = []
        transform, inliers = self._orb_transform(moving, fixed)
        if transform is not None:
            registrations.append(("orb", transform, inliers))
        if kps_pairs:
            src = np.concatenate([m for _, m in kps_pairs]) * moving.scale
            dst = np.concatenate([f for f, _ in kps_pairs]) * fixed.scale
            transform, _ = cv2.estimateAffinePartial2D(
                src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS
            )
            if transform is not None:
                registrations.append(("face-keypoints", transform, 0))
        for method, transform, inliers in registrations:
            distance, overlap = self.distance(moving, fixed, transform)
            if distance <= self.near_threshold and overlap >= self.min_overlap:
                return {
                    "distance": round(distance, 4),
                    "overlap": round(overlap, 3),
                    "registration": method,
                    "inliers": inliers,
                }
        return None


def _face_candidates(
    table: FaceTable, rows: np.ndarray, face_similarity: float
) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Photo pairs sharing at least one face at face_similarity or more.

    Returns (sha_a, sha_b) -> matched (row_a, row_b) face pairs (each face used once, most
    similar first), sha_a < sha_b.
    """
    assert table.embedding is not None
    unit = normalise(table.embedding[rows])
    ei, ej, es = linkage.neighbour_edges(unit, 1.0 - face_similarity)
    edges: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    for i, j, s in zip(ei, ej, es, strict=True):
        ri, rj = int(rows[i]), int(rows[j])
        a, b = table.sha256[ri], table.sha256[rj]
        if a == b:
            continue
        if a > b:
            a, b, ri, rj = b, a, rj, ri
        edges.setdefault((a, b), []).append((float(s), ri, rj))
    candidates: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for (a, b), found in edges.items():
        used_a: set[int] = set()
        used_b: set[int] = set()
        matched: list[tuple[int, int]] = []
        for _, ra, rb in sorted(found, reverse=True):  # greedy, most similar first
            if ra not in used_a and rb not in used_b:
                used_a.add(ra)
                used_b.add(rb)
                matched.append((ra, rb))
        candidates[(a, b)] = matched
    return candidates


def _hash_candidates(
    photos: Photos, shas: list[str], max_distance: float, progress: ProgressFn | None
) -> list[tuple[str, str]]:
    hashes: list[np.ndarray] = []
    kept: list[str] = []
    for done, sha in enumerate(shas, start=1):
        for path in photos.existing[sha]:
            try:
                hashes.append(dct_hash(path, sha))
                kept.append(sha)
                break
            except (OSError, ValueError, DecodeError) as exc:
                _unusable(photos, path, exc)
        report(progress, "hash", done, len(shas))
    if len(kept) < 2:
        return []
    matrix = np.array(hashes, dtype=np.float32)
    usable = np.linalg.norm(matrix, axis=1) > 0  # flat images have no hash
    index = np.flatnonzero(usable)
    ei, ej, _ = linkage.neighbour_edges(matrix[index], max_distance)
    pairs = {tuple(sorted((kept[index[i]], kept[index[j]]))) for i, j in zip(ei, ej, strict=True)}
    return sorted(pairs)


def _groups(pairs: dict[tuple[str, str], Evidence]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, list[str]] = {}
    for sha in list(parent):
        members.setdefault(root(sha), []).append(sha)
    return [sorted(m) for m in members.values()]


def dedup(
    store: FaceStore,
    params: DedupParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    """Write <store>.duplicates.json: identical and near-duplicate groups (see module docstring)."""
    p = params or DedupParams()
    table, photos, rows = open_faces(store, roots, progress)

    identical = [
        {"sha256": sha, "paths": [row.path, *row.aliases]}
        for sha, row in sorted(photos.rows.items())
        if row.aliases
    ]

    face_pairs = _face_candidates(table, rows, p.face_similarity) if rows.size else {}
    with_faces = {table.sha256[r] for r in rows}
    faceless = sorted(
        sha for sha, paths in photos.existing.items() if paths and sha not in with_faces
    )
    hash_pairs = _hash_candidates(photos, faceless, p.candidate_distance, progress)
    candidates: list[tuple[str, str, list[tuple[np.ndarray, np.ndarray]]]] = [
        (a, b, [(table.kps[ra], table.kps[rb]) for ra, rb in matched])
        for (a, b), matched in sorted(face_pairs.items())
    ] + [(a, b, []) for a, b in hash_pairs]

    verifier = _Verifier(photos, p.near_threshold, p.min_overlap, p.min_inliers)
    pixels = {sha: row.width * row.height for sha, row in photos.rows.items()}
    verified: dict[tuple[str, str], Evidence] = {}
    for done, (a, b, kps_pairs) in enumerate(candidates, start=1):
        # Warp the smaller photo onto the larger: overlap is then measured on the original.
        if pixels[b] > pixels[a]:
            evidence = verifier.verify(b, a, [(kb, ka) for ka, kb in kps_pairs])
        else:
            evidence = verifier.verify(a, b, kps_pairs)
        if evidence is not None:
            verified[(a, b)] = evidence
        report(progress, "verify", done, len(candidates))

    def describe(sha: str) -> dict[str, str | int]:
        row = photos.rows[sha]
        return {
            "sha256": sha,
            "path": (photos.existing.get(sha) or [row.path])[0],
            "width": row.width,
            "height": row.height,
            "size": row.size,
        }

    groups: list[tuple[str, dict[str, object]]] = []  # (first member's path, the group)
    extra_photos = 0
    for members in _groups(verified):
        ranked = sorted(members, key=lambda s: (-pixels[s], -photos.rows[s].size, s))
        pairs = [
            {"a": a, "b": b, **evidence}
            for (a, b), evidence in sorted(verified.items())
            if a in members
        ]
        described = [describe(s) for s in ranked]
        extra_photos += len(described) - 1
        group: dict[str, object] = {"keep": ranked[0], "members": described, "pairs": pairs}
        groups.append((str(described[0]["path"]), group))
    near = [group for _, group in sorted(groups, key=lambda item: item[0])]

    payload = {
        "command": "dedup",
        "store": store_identity(store),
        "model": model_identity(store).to_json(),
        "parameters": p.recorded(),
        "identical": identical,
        "near": near,
        "missing_sources": photos.missing_report(),
    }
    path = layout.duplicates_path(store.path)
    written = write_json_if_changed(path, payload)
    summary = {
        "identical_groups": len(identical),
        "identical_extra_copies": sum(len(g["paths"]) - 1 for g in identical),
        "near_groups": len(near),
        "near_extra_photos": extra_photos,
        "candidate_pairs": len(candidates),
        "verified_pairs": len(verified),
        "missing_photos": len(photos.missing_photos()),
        "missing_paths": len(photos.missing_paths),
        "changed_paths": len(photos.changed_paths),
        "report_written": written,
    }
    log.info("dedup done", store=str(store.path), **summary)
    return JobOutcome(summary=summary, manifest_path=path)


Request = clustering_pb2.DedupRequest


class Dedup(ClusteringJob[Request, DedupParams]):
    """Writes STORE.duplicates.json beside the store."""

    params = DedupParams

    def run(self, ctx: JobContext[Request], params: DedupParams) -> JobOutcome:
        return dedup(ctx.store, params, progress=ctx.progress, roots=ctx.roots)
