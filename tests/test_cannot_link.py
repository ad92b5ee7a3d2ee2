"""Cannot-link: two faces of one photo never end in one cluster.

Synthetic embeddings: the constrained linkage equals a plain greedy average linkage that skips
merges of clusters sharing a photo, and equals scikit-learn's unconstrained result when no two
faces share a photo. Centroid merges and nearest-centroid assignment honour the same rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from test_linkage import faces, reference

from facesets.clustering import linkage
from facesets.clustering.linkage import (
    assign_nearest,
    cannot_link_pairs,
    canonical_labels,
    cluster_average_linkage,
    merge_centroids,
)
from facesets.clustering.neighbours import SearchParams


def greedy_reference(emb: np.ndarray, threshold: float, photo: np.ndarray) -> np.ndarray:
    """Textbook average linkage: merge the closest allowed pair below threshold, repeat."""
    n = emb.shape[0]
    dist = squareform(pdist(emb.astype(np.float64), metric="cosine"))
    np.fill_diagonal(dist, np.inf)
    blocked = photo[:, None] == photo[None, :]
    size = np.ones(n)
    alive = np.ones(n, bool)
    members = [[i] for i in range(n)]
    while True:
        masked = np.where(blocked | ~alive[:, None] | ~alive[None, :], np.inf, dist)
        a, b = np.unravel_index(int(np.argmin(masked)), masked.shape)
        if not masked[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        dist[a] = (size[a] * dist[a] + size[b] * dist[b]) / (size[a] + size[b])
        dist[:, a] = dist[a]
        dist[a, a] = np.inf
        blocked[a] |= blocked[b]
        blocked[:, a] = blocked[a]
        size[a] += size[b]
        alive[b] = False
        members[a] += members[b]
    raw = np.empty(n, np.int64)
    for k in np.flatnonzero(alive):
        raw[members[k]] = k
    return canonical_labels(raw)[0]


def sibling_pair(rng: np.random.Generator, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Two tight groups of 6 faces, 0.35 apart on average: average linkage at 0.55 merges them.
    Face 0 (group A) and face 6 (group B) come from one photo."""
    a = rng.standard_normal(dim)
    a /= np.linalg.norm(a)
    b = a + 0.9 * rng.standard_normal(dim) / np.sqrt(dim)
    b /= np.linalg.norm(b)
    emb = np.vstack(
        [c + 0.25 * rng.standard_normal((6, dim)) / np.sqrt(dim) for c in (a, b)]
    ).astype(np.float32)
    photo = np.arange(12)
    photo[6] = 0
    return emb, photo


def test_cannot_link_pairs_are_the_faces_of_each_photo() -> None:
    i, j = cannot_link_pairs(np.array(["x", "y", "x", "z", "x", "y"]), 6)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 2), (0, 4), (1, 5), (2, 4)]
    assert cannot_link_pairs(None, 6)[0].size == 0
    assert cannot_link_pairs(np.arange(6), 6)[0].size == 0
    with pytest.raises(ValueError, match="one value per face"):
        cannot_link_pairs(np.arange(5), 6)


@pytest.mark.parametrize("dense_max", [256, 2])
def test_clusters_sharing_a_photo_stay_apart_and_merge_without_the_constraint(
    dense_max: int,
) -> None:
    emb, photo = sibling_pair(np.random.default_rng(3))
    free = cluster_average_linkage(emb, 0.55, dense_max=dense_max)
    assert free.n_clusters == 1 and free.prevented == 0
    kept = cluster_average_linkage(emb, 0.55, dense_max=dense_max, photo=photo)
    assert kept.labels[0] != kept.labels[6]
    assert kept.n_clusters == 2
    assert set(kept.labels[:6]) == {kept.labels[0]} and set(kept.labels[6:]) == {kept.labels[6]}
    assert kept.prevented >= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.3, 0.55])
def test_no_shared_photo_gives_the_unconstrained_result(seed: int, threshold: float) -> None:
    emb, _ = faces(seed)
    expected = reference(emb, threshold)
    own = np.arange(emb.shape[0]) * 7  # one photo per face
    for dense_max in (256, 2):
        result = cluster_average_linkage(emb, threshold, dense_max=dense_max, photo=own)
        np.testing.assert_array_equal(result.labels, expected)
        assert result.prevented == 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_constrained_linkage_equals_greedy_average_linkage_that_skips_shared_photos(
    seed: int,
) -> None:
    emb, truth = faces(seed, identities=24)
    rng = np.random.default_rng(seed)
    photo = np.arange(emb.shape[0])
    # Group photos: faces of different identities (and a few of one) share a photo.
    for _ in range(emb.shape[0] // 4):
        i, j = rng.choice(emb.shape[0], 2, replace=False)
        photo[photo == photo[j]] = photo[i]
    result = cluster_average_linkage(emb, 0.55, photo=photo)
    np.testing.assert_array_equal(result.labels, greedy_reference(emb, 0.55, photo))
    for k in np.unique(result.labels):
        held = photo[result.labels == k]
        assert np.unique(held).size == held.size  # no photo twice in one cluster
    free = cluster_average_linkage(emb, 0.55)
    changed = not np.array_equal(free.labels, result.labels)
    assert changed == (result.prevented > 0)


def test_centroid_merge_skips_clusters_that_share_a_photo() -> None:
    emb, photo = sibling_pair(np.random.default_rng(5))
    labels = np.repeat([0, 1], 6)
    merged = merge_centroids(emb, labels, 0.55)
    assert np.unique(merged.labels).size == 1 and merged.prevented == 0
    kept = merge_centroids(emb, labels, 0.55, photo=photo)
    assert np.unique(kept.labels).size == 2 and kept.prevented == 1
    assert kept.labels[0] != kept.labels[6]
    own = merge_centroids(emb, labels, 0.55, photo=np.arange(12))
    np.testing.assert_array_equal(own.labels, merged.labels)
    assert (
        linkage.merge_by_centroid(emb, labels, 0.55, photo=photo).tolist() == kept.labels.tolist()
    )


def test_assignment_never_joins_a_centroid_holding_the_photo_or_twice_from_one_photo() -> None:
    rng = np.random.default_rng(2)
    cents = np.eye(3, 16, dtype=np.float32)  # orthogonal: 1.0 apart
    near = cents[[0, 0, 1, 2]] + 0.05 * rng.standard_normal((4, 16)).astype(np.float32)
    plain = assign_nearest(near, cents, 0.55)
    assert plain.rows.tolist() == [0, 0, 1, 2] and plain.prevented == 0
    # Faces 0 and 1 come from one photo; face 3's photo is already held by centroid 2.
    photo = np.array(["p", "p", "q", "r"])
    held = (np.array([2, 1]), np.array(["r", "s"]))
    got = assign_nearest(near, cents, 0.55, photo=photo, held=held)
    assert got.rows[2] == 1  # photo q is held nowhere
    # Other centroids lie far beyond the threshold: the second face of photo p joins none.
    assert sorted(got.rows[:2].tolist()) == [-1, 0]
    assert got.rows[3] == -1
    assert got.prevented == 2
    same = assign_nearest(near, cents, 0.55, photo=np.array(["a", "b", "c", "d"]), held=held)
    np.testing.assert_array_equal(same.rows, plain.rows)
    assert same.prevented == 0


def test_the_ivf_neighbour_graph_feeds_the_constraint_too() -> None:
    emb, _ = faces(4, identities=40)
    rng = np.random.default_rng(4)
    photo = np.arange(emb.shape[0])
    for _ in range(emb.shape[0] // 4):
        i, j = rng.choice(emb.shape[0], 2, replace=False)
        photo[photo == photo[j]] = photo[i]
    ivf = SearchParams(backend="ivf", nlist=4, nprobe=4, k=emb.shape[0], recall_queries=0)
    result = cluster_average_linkage(emb, 0.55, search=ivf, photo=photo)
    assert result.search is not None and result.search.backend == "ivf"
    # Every list probed and every face a neighbour: the graph is exact, so is the result.
    np.testing.assert_array_equal(result.labels, greedy_reference(emb, 0.55, photo))


def test_the_constraint_is_on_unless_a_request_or_flag_turns_it_off() -> None:
    import argparse

    from facesets.contract.clustering import ClusterParams, ExtendParams, RefineParams, RouteParams
    from facesets.orchestrator import immich_import, jobs
    from facesets.v1 import clustering_pb2

    kinds = [
        (ClusterParams, clustering_pb2.ClusterRequest),
        (RefineParams, clustering_pb2.RefineRequest),
        (ExtendParams, clustering_pb2.ExtendRequest),
        (RouteParams, clustering_pb2.RouteRequest),
    ]
    for params, request in kinds:
        assert params().cannot_link is True
        assert params.from_request(request()).cannot_link is True
        off = params.from_request(request(cannot_link=False))
        assert off.cannot_link is False
    for add, make in (
        (jobs.add_cluster_arguments, jobs.cluster_job),
        (jobs.add_refine_arguments, jobs.refine_job),
        (jobs.add_extend_arguments, jobs.extend_job),
    ):
        parser = argparse.ArgumentParser()
        add(parser)
        assert make(parser.parse_args(["s.db", "out"])).params.cannot_link is True
        flagged = make(parser.parse_args(["s.db", "out", "--allow-same-photo"]))
        assert flagged.params.cannot_link is False
        assert flagged.to_proto().cannot_link is False
    parser = argparse.ArgumentParser()
    immich_import.add_arguments(parser)
    request = immich_import.import_request(parser.parse_args(["--user", "u", "--allow-same-photo"]))
    assert request.route.cannot_link is False
