"""Average-linkage clustering, its helpers and the quality metrics.

The reference is scikit-learn's AgglomerativeClustering (cosine, average linkage, distance
threshold): the component-wise dense path and the sparse path must give the same partition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL_PACK, lfw_people, reference_session_options
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import pdist, squareform
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics.cluster import pair_confusion_matrix

from facesets.clustering import linkage
from facesets.clustering.linkage import (
    METHOD_DENSE,
    METHOD_SINGLETON,
    METHOD_SPARSE,
    canonical_labels,
    cluster_average_linkage,
    complete_linkage_groups,
    merge_by_centroid,
    nearest_centroid,
    neighbour_edges,
    reject_outliers,
)
from facesets.clustering.metrics import bcubed_prf, pairwise_prf, purity


def faces(
    seed: int, identities: int = 30, dim: int = 64, spread: tuple[float, float] = (0.7, 1.2)
) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of identities with long-tailed sizes, lookalikes and single faces."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.zipf(1.8, identities), 25)
    centres = rng.standard_normal((identities, dim))
    centres[1::2] = 0.6 * centres[::2][: identities // 2] + 0.8 * centres[1::2]  # lookalikes
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(identities), sizes)
    sigma = rng.uniform(*spread, truth.size)[:, None]
    emb = centres[truth] + sigma * rng.standard_normal((truth.size, dim)) / np.sqrt(dim)
    loose = rng.standard_normal((identities // 3, dim))
    emb = np.vstack([emb, loose])
    truth = np.concatenate([truth, identities + np.arange(loose.shape[0])])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    perm = rng.permutation(truth.size)
    return emb[perm], truth[perm]


def reference(emb: np.ndarray, threshold: float) -> np.ndarray:
    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=threshold
    )
    return canonical_labels(model.fit_predict(emb))[0]


# --- agreement with scikit-learn ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("threshold", [0.3, 0.55, 0.8])
def test_matches_sklearn_dense_and_sparse(seed: int, threshold: float) -> None:
    emb, _ = faces(seed)
    expected = reference(emb, threshold)
    dense = cluster_average_linkage(emb, threshold)
    sparse = cluster_average_linkage(emb, threshold, dense_max=2)
    single = cluster_average_linkage(emb.astype(np.float32), threshold, dense_max=2)
    np.testing.assert_array_equal(dense.labels, expected)
    np.testing.assert_array_equal(sparse.labels, expected)
    np.testing.assert_array_equal(single.labels, expected)
    assert {c.method for c in dense.components} <= {METHOD_DENSE, METHOD_SINGLETON}
    if any(c.size > 2 for c in sparse.components):
        assert METHOD_SPARSE in sparse.method_counts()


def test_one_large_chained_component_matches_sklearn() -> None:
    # Many close identities: the neighbour graph chains most faces into one component,
    # which average linkage still splits into several clusters.
    emb, _ = faces(7, identities=60, dim=32, spread=(1.0, 1.4))
    threshold = 0.6
    expected = reference(emb, threshold)
    result = cluster_average_linkage(emb, threshold, dense_max=40)
    np.testing.assert_array_equal(result.labels, expected)
    big = max(result.components, key=lambda c: c.size)
    assert big.method == METHOD_SPARSE
    assert big.size > emb.shape[0] // 3
    assert big.clusters > 3


def test_exact_duplicates_and_ties_terminate_and_agree() -> None:
    emb, _ = faces(11, identities=12)
    emb = np.vstack([emb, emb[:10], emb[:3]])  # the same photo ingested again
    dense = cluster_average_linkage(emb, 0.5)
    sparse = cluster_average_linkage(emb, 0.5, dense_max=2)
    np.testing.assert_array_equal(dense.labels, sparse.labels)
    np.testing.assert_array_equal(dense.labels, reference(emb, 0.5))
    n = emb.shape[0] - 13
    assert all(dense.labels[n + i] == dense.labels[i] for i in range(10))


def test_unnormalised_input_is_cosine() -> None:
    emb, _ = faces(5)
    scale = np.random.default_rng(0).uniform(0.5, 3.0, (emb.shape[0], 1))
    expected = cluster_average_linkage(emb, 0.55).labels
    np.testing.assert_array_equal(cluster_average_linkage(emb * scale, 0.55).labels, expected)
    sparse = cluster_average_linkage(emb * scale, 0.55, dense_max=2)
    np.testing.assert_array_equal(sparse.labels, expected)


# --- the facts the method rests on -------------------------------------------------------------


def test_clusters_never_span_components_of_the_threshold_graph() -> None:
    emb, _ = faces(3, identities=40)
    threshold = 0.55
    dist = squareform(pdist(emb, "cosine"))
    close = np.argwhere(np.triu(dist < threshold, 1))
    graph = coo_matrix((np.ones(len(close)), (close[:, 0], close[:, 1])), shape=dist.shape)
    _, comp = connected_components(graph, directed=False)
    labels = reference(emb, threshold)
    for k in np.unique(labels):
        assert np.unique(comp[labels == k]).size == 1
    result = cluster_average_linkage(emb, threshold)
    assert sum(c.size for c in result.components) == emb.shape[0]
    assert sum(c.clusters for c in result.components) == result.n_clusters
    assert len(result.components) == np.unique(comp).size


def test_average_distance_from_sum_vectors() -> None:
    """The sparse path's distance of two clusters from their sum vectors equals the mean of
    their members' pairwise cosine distances (scipy's cdist)."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(1)
    members = [rng.standard_normal((n, 16)) for n in (7, 11, 1, 4)]
    members = [m / np.linalg.norm(m, axis=1, keepdims=True) for m in members]
    sums = np.array([m.sum(0) for m in members])
    sizes = np.array([len(m) for m in members], dtype=np.float64)
    a, b = np.array([0, 0, 1, 2]), np.array([1, 2, 3, 3])
    got = linkage._pair_distances(sums, sizes, a, b)
    direct = [cdist(members[i], members[j], "cosine").mean() for i, j in zip(a, b, strict=True)]
    np.testing.assert_allclose(got, direct, atol=1e-12)


def test_neighbour_edges_blocked_equals_brute_force() -> None:
    emb, _ = faces(2)
    emb = emb.astype(np.float32)
    ei, ej, es = neighbour_edges(emb, 0.55, row_block=7, col_block=5)
    sims = emb @ emb.T
    want = {(int(i), int(j)) for i, j in np.argwhere(np.triu(sims >= 0.45, 1))}
    assert set(zip(ei.tolist(), ej.tolist(), strict=True)) == want
    assert ei.dtype == np.int32 and ej.dtype == np.int32 and es.dtype == np.float32
    np.testing.assert_allclose(es, sims[ei, ej], rtol=0, atol=1e-6)
    assert np.all(ei < ej)


def test_labels_are_ordered_by_size_then_first_member() -> None:
    labels, sizes = canonical_labels(np.array([7, 3, 3, 9, 7, 5, -1, 5]))
    np.testing.assert_array_equal(labels, [0, 1, 1, 3, 0, 2, -1, 2])
    np.testing.assert_array_equal(sizes, [2, 2, 2, 1])
    result = cluster_average_linkage(faces(0)[0], 0.55)
    assert np.all(np.diff(result.sizes) <= 0)
    np.testing.assert_array_equal(np.bincount(result.labels), result.sizes)


def test_progress_reaches_total_and_edge_cases() -> None:
    calls: list[tuple[int, int]] = []
    result = cluster_average_linkage(faces(1)[0], 0.55, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(d <= t for d, t in calls)
    assert result.n_clusters > 1
    empty = cluster_average_linkage(np.zeros((0, 8), np.float32), 0.55)
    assert empty.labels.size == 0 and empty.n_clusters == 0
    one = cluster_average_linkage(np.ones((1, 8), np.float32), 0.55)
    np.testing.assert_array_equal(one.labels, [0])


@pytest.mark.parametrize(
    ("emb", "threshold", "message"),
    [
        (np.ones(8), 0.5, "2-d"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), 0.5, "NaN"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), 0.5, "zero"),
        (np.eye(3), 0.0, "threshold"),
        (np.eye(3), 2.5, "threshold"),
    ],
)
def test_bad_input_is_refused(emb: np.ndarray, threshold: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster_average_linkage(emb, threshold)


# --- helpers of refine, consolidate and extend ----------------------------------------------


def around(rng: np.random.Generator, centre: np.ndarray, count: int, spread: float) -> np.ndarray:
    pts = centre + spread * rng.standard_normal((count, centre.size)) / np.sqrt(centre.size)
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_centroids_are_unit_means() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    got = linkage.centroids(emb, np.array([0, 0, 5, -1]))
    assert sorted(got) == [0, 5]
    np.testing.assert_allclose(got[0], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(got[5], [1.0, 0.0], atol=1e-6)


def test_merge_by_centroid_joins_over_split_person_only() -> None:
    rng = np.random.default_rng(4)
    dim = 64
    person, other = unit(rng.standard_normal(dim)), unit(rng.standard_normal(dim))
    emb = np.vstack(
        [around(rng, person, 10, 0.5), around(rng, person, 6, 0.5), around(rng, other, 8, 0.5)]
    )
    labels = np.array([0] * 10 + [1] * 6 + [2] * 8)
    labels[3] = -1
    merged = merge_by_centroid(emb, labels, 0.40)
    assert merged[3] == -1
    assert len(set(merged[:16]) - {-1}) == 1  # the two halves of one person
    assert merged[0] == 0  # the larger cluster comes first
    assert set(merged[16:]) == {1}


def test_reject_outliers_only_in_large_enough_clusters() -> None:
    rng = np.random.default_rng(5)
    dim = 64
    person = unit(rng.standard_normal(dim))
    stranger = unit(rng.standard_normal(dim))
    big = np.vstack([around(rng, person, 9, 0.4), stranger[None]])
    small = np.vstack([around(rng, unit(rng.standard_normal(dim)), 2, 0.4), stranger[None]])
    emb = np.vstack([big, small])
    labels = np.array([4] * 10 + [8] * 3)
    out = reject_outliers(emb, labels, threshold=0.55, min_size=4)
    np.testing.assert_array_equal(out[:9], 4)
    assert out[9] == -1  # the stranger in the big cluster
    np.testing.assert_array_equal(out[10:], 8)  # too small to judge
    assert labels[9] == 4  # the input is left as it was


def test_complete_linkage_does_not_chain_distinct_people() -> None:
    a = np.array([1.0, 0.0, 0.0])
    b = unit(np.array([1.0, 1.0, 0.0]))  # 45 degrees from a and from c
    c = np.array([0.0, 1.0, 0.0])
    d = unit(np.array([0.0, 0.0, 1.0]) + 0.1 * a)
    e = unit(np.array([0.0, 0.0, 1.0]) - 0.1 * a)
    cents = np.vstack([a, b, c, d, e])
    groups = complete_linkage_groups(cents, min_similarity=0.65)
    assert [3, 4] in groups
    assert not any({0, 2} <= set(g) for g in groups)  # a~b~c is a chain, a and c differ
    assert len([g for g in groups if 1 in g]) == 1
    assert complete_linkage_groups(cents, min_similarity=0.99) == []
    assert complete_linkage_groups(cents[:1], min_similarity=0.5) == []


def test_nearest_centroid_within_threshold() -> None:
    cents = np.eye(4, dtype=np.float32)
    emb = np.array(
        [unit(np.array([1.0, 0.2, 0, 0])), unit(np.array([0, 0, 0.3, 1.0])), unit(np.ones(4))]
    )
    rows, dist = nearest_centroid(emb, cents, 0.3)
    np.testing.assert_array_equal(rows, [0, 3, -1])
    np.testing.assert_allclose(dist, [1 - emb[0, 0], 1 - emb[1, 3], 0.5], atol=1e-6)
    none_rows, none_dist = nearest_centroid(emb, np.zeros((0, 4), np.float32), 0.3)
    np.testing.assert_array_equal(none_rows, [-1, -1, -1])
    assert np.isinf(none_dist).all()


# --- metrics -----------------------------------------------------------------------------------


def test_pairwise_prf_by_hand() -> None:
    true = np.array([0, 0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1, 1])
    # Predicted pairs: (0,1) (2,3) (2,4) (3,4): one true pair (0,1) and (3,4) -> 2 of 4.
    # True pairs: (0,1) (0,2) (1,2) (3,4): 2 of 4 found.
    assert pairwise_prf(true, pred) == pytest.approx((0.5, 0.5, 0.5))
    assert pairwise_prf(true, true) == (1.0, 1.0, 1.0)
    singletons = np.arange(5)
    p, r, f = pairwise_prf(true, singletons)
    assert (p, r, f) == (1.0, 0.0, 0.0)


def test_pairwise_prf_matches_pair_confusion_matrix() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        true = rng.integers(0, 20, 300)
        pred = np.where(rng.random(300) < 0.8, true, rng.integers(0, 25, 300))
        (_, fp), (fn, tp) = pair_confusion_matrix(true, pred)
        p, r, f = pairwise_prf(true, pred)
        assert p == pytest.approx(tp / (tp + fp))
        assert r == pytest.approx(tp / (tp + fn))
        assert f == pytest.approx(2 * p * r / (p + r))


def test_bcubed_and_purity_by_hand() -> None:
    true = np.array(["a", "a", "a", "b", "b"])
    pred = np.array([0, 0, 1, 1, 1])
    # Per item precision: 1, 1, 1/3, 2/3, 2/3; recall: 2/3, 2/3, 1/3, 1, 1.
    p, r, f = bcubed_prf(true, pred)
    assert p == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3) / 5)
    assert r == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1) / 5)
    assert f == pytest.approx(2 * p * r / (p + r))
    assert purity(true, pred) == pytest.approx(4 / 5)


def test_unclustered_faces_count_as_singletons() -> None:
    true = np.array([0, 0, 1, 1])
    # Two unclustered faces of one person are not a predicted pair.
    assert pairwise_prf(true, np.array([-1, -1, 3, 3])) == pytest.approx((1.0, 0.5, 2 / 3))
    assert bcubed_prf(true, np.array([-1, -1, -1, -1]))[0] == 1.0
    with pytest.raises(ValueError, match="length"):
        pairwise_prf(true, np.array([0, 1]))


# --- real faces ------------------------------------------------------------------------------


LFW_PEOPLE = 30
LFW_PER_PERSON = 4


def labelled_face(app: object, image: np.ndarray) -> np.ndarray | None:
    """The normalised embedding of the face nearest the image centre (LFW's labelled face)."""
    found = app.get(image)  # type: ignore[attr-defined]
    if not found:
        return None
    h, w = image.shape[:2]
    best = min(
        found,
        key=lambda f: np.hypot(
            (f.bbox[0] + f.bbox[2]) / 2 - w / 2, (f.bbox[1] + f.bbox[3]) / 2 - h / 2
        ),
    )
    return np.asarray(best.normed_embedding, np.float32)


@pytest.fixture(scope="module")
def lfw_slice(lfw_dir: Path, model_root: Path) -> tuple[np.ndarray, np.ndarray]:
    import cv2
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(
        name=MODEL_PACK,
        root=str(model_root),
        providers=["CPUExecutionProvider"],
        sess_options=reference_session_options(),
    )
    app.prepare(ctx_id=-1, det_size=(256, 256))  # LFW's 250-px photos, as the service does
    embs, people = [], []
    for person, photos in lfw_people(lfw_dir, LFW_PEOPLE, LFW_PER_PERSON, min_photos=4).items():
        for photo in photos:
            emb = labelled_face(app, cv2.imread(str(photo)))
            if emb is not None:
                embs.append(emb)
                people.append(person)
    return np.stack(embs), np.array(people)


def test_lfw_people_land_in_one_cluster(lfw_slice: tuple[np.ndarray, np.ndarray]) -> None:
    emb, people = lfw_slice
    assert emb.shape[0] >= LFW_PEOPLE * LFW_PER_PERSON * 0.9
    result = cluster_average_linkage(emb, 0.55)
    np.testing.assert_array_equal(result.labels, reference(emb, 0.55))
    sparse = cluster_average_linkage(emb, 0.55, dense_max=2)
    np.testing.assert_array_equal(sparse.labels, result.labels)
    # Measured on this slice: all 30 people whole, pairwise and BCubed F 1.0.
    whole = sum(np.unique(result.labels[people == p]).size == 1 for p in np.unique(people))
    p, r, f = pairwise_prf(people, result.labels)
    assert whole >= 0.9 * LFW_PEOPLE
    assert p >= 0.95 and f >= 0.9
    assert bcubed_prf(people, result.labels)[2] >= 0.9
    assert result.n_clusters <= 1.2 * LFW_PEOPLE
