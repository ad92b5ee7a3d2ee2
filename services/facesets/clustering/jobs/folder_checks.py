"""Checks on a hand-sorted folder's identity: one face per photo, and one person per folder.

A photo shows each person once, so of a photo's faces at most one is the folder's person: the
one nearest the identity's centroid (the others are bystanders, whatever their distance).
A folder that holds two people (a mis-sorted batch) keeps all of them through the outlier
passes when they are about as many, since its centroid lies between them; clustering its kept
faces shows it: its largest cluster holds only part of them (its purity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesets.clustering import linkage
from facesets.common import settings
from facesets.contract import defaults


def nearest_per_photo(
    rows: np.ndarray, embedding: np.ndarray, photos: list[str], centroid: np.ndarray
) -> np.ndarray:
    """Of `rows` (whose embeddings and photos are given), the one nearest the centroid for
    each photo, in their original order."""
    best: dict[str, tuple[float, int]] = {}
    distances = 1.0 - embedding @ centroid
    for i, photo in enumerate(photos):
        if photo not in best or distances[i] < best[photo][0]:
            best[photo] = (float(distances[i]), i)
    keep = sorted(i for _, i in best.values())
    return rows[keep]


@dataclass(frozen=True)
class Purity:
    share: float  # of the kept faces, the largest cluster's share
    clusters: list[int]  # cluster sizes, largest first

    @property
    def mixed(self) -> bool:
        """More than one person, by the clusters: a minor cluster too large to be noise."""
        others = sum(self.clusters[1:])
        return (
            self.share < settings.clustering().import_folders.min_purity
            and others >= settings.clustering().import_folders.mixed_min_faces
        )

    def as_json(self) -> dict[str, object]:
        return {"purity": round(self.share, 2), "clusters": self.clusters[:5], "mixed": self.mixed}


def folder_purity(embedding: np.ndarray, photos: list[str]) -> Purity:
    """The kept faces clustered at the clustering threshold (faces of one photo never join)."""
    if len(photos) < 2:
        return Purity(1.0, [len(photos)] if photos else [])
    result = linkage.cluster_average_linkage(
        embedding, defaults.CLUSTER_THRESHOLD, photo=np.asarray(photos, dtype=str).reshape(-1)
    )
    sizes = sorted((int(s) for s in np.bincount(result.labels)), reverse=True)
    return Purity(sizes[0] / len(photos), sizes)
