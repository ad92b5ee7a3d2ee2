"""Look-alike review list: facesets close enough to be one person that share a photo.

Two faces of one photo are two people (the cannot-link constraint), so two facesets that
share a photo stay apart however close their centroids lie. Where the centroids lie within
the merge threshold plus a margin the pair is listed for a person to judge: siblings, twins
and look-alikes, or a face detected twice (a mirror, a photo within the photo).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

from facesets.contract.manifests import FacesetEntry, LookalikePair


def lookalike_pairs(facesets: Sequence[FacesetEntry], max_distance: float) -> list[LookalikePair]:
    """Pairs of faceset entries (`name`, `photos`, `centroid`) that share at least one photo
    and whose centroids lie within `max_distance` (cosine), closest first.

    Each pair: {"facesets": [a, b], "distance": d, "shared_photos": [sha256, ...]}.
    """
    by_photo: dict[str, list[int]] = {}
    for i, entry in enumerate(facesets):
        for sha in entry.photos or []:
            by_photo.setdefault(sha, []).append(i)
    shared: dict[tuple[int, int], list[str]] = {}
    for sha, owners in by_photo.items():
        for a, b in combinations(sorted(set(owners)), 2):
            shared.setdefault((a, b), []).append(sha)
    pairs: list[LookalikePair] = []
    for (a, b), shas in shared.items():
        ca = np.asarray(facesets[a].centroid or [], np.float64)
        cb = np.asarray(facesets[b].centroid or [], np.float64)
        if ca.shape != cb.shape or ca.size == 0:
            continue
        norm = float(np.linalg.norm(ca) * np.linalg.norm(cb))
        if norm == 0.0:
            continue
        distance = 1.0 - float(ca @ cb) / norm
        if distance <= max_distance:
            names = [facesets[a].name, facesets[b].name]
            pairs.append(LookalikePair(names, round(distance, 6), sorted(shas)))
    pairs.sort(key=lambda p: (p.distance, p.facesets))
    return pairs
