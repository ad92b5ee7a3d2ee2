"""Neighbour search through faiss: the flat index equals the blocked search, the IVF index
clusters as the exact search does and records its recall, extend through an index files faces
as the exact nearest-centroid does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import lfw_people
from sklearn.metrics import adjusted_rand_score
from store_fixtures import add_photos, new_store

from facesets.clustering import linkage, neighbours
from facesets.clustering.jobs.cluster import cluster
from facesets.clustering.linkage import cluster_average_linkage, nearest_centroid
from facesets.clustering.neighbours import SearchParams
from facesets.common import settings
from facesets.contract import layout


def identities(
    n_ids: int, per_id: int, dim: int = 64, seed: int = 0, loose: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Unit float32 embeddings: n_ids identities of up to per_id faces, plus loose faces."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, per_id + 1, n_ids)
    centres = rng.standard_normal((n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_ids), sizes)
    sigma = rng.uniform(0.5, 0.9, truth.size)[:, None]
    emb = centres[truth] + sigma * rng.standard_normal((truth.size, dim)) / np.sqrt(dim)
    emb = np.vstack([emb, rng.standard_normal((loose, dim))])
    truth = np.concatenate([truth, n_ids + np.arange(loose)])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    perm = rng.permutation(truth.size)
    return emb[perm].astype(np.float32), truth[perm]


IVF = SearchParams(backend="ivf", nlist=32, nprobe=8, k=48, recall_queries=300)


def test_flat_index_finds_exactly_the_pairs_of_the_blocked_search() -> None:
    emb, _ = identities(60, 20, seed=1)
    expected = linkage.neighbour_edges(emb, 0.55)
    ei, ej, es = neighbours.flat_range_edges(emb, 0.55)
    order = np.lexsort((ej, ei))
    np.testing.assert_array_equal(ei[order], expected[0])
    np.testing.assert_array_equal(ej[order], expected[1])
    np.testing.assert_allclose(es[order], expected[2], atol=1e-5)


def test_small_stores_search_the_flat_index_with_the_exact_clusters() -> None:
    emb, _ = identities(80, 15, seed=2)
    exact = cluster_average_linkage(emb, 0.55, search=SearchParams(backend="exact"))
    auto = cluster_average_linkage(emb, 0.55)
    assert auto.search is not None and auto.search.backend == "flat"
    assert auto.search.as_json()["recall"] == 1.0
    np.testing.assert_array_equal(auto.labels, exact.labels)
    # float64 input keeps float64 similarities through the faiss path
    emb64 = emb.astype(np.float64)
    np.testing.assert_array_equal(
        cluster_average_linkage(emb64, 0.55, dense_max=2).labels,
        cluster_average_linkage(emb64, 0.55, dense_max=2, search=SearchParams("exact")).labels,
    )


def test_ivf_index_clusters_as_the_exact_search_and_measures_recall() -> None:
    emb, truth = identities(300, 25, seed=3)  # about 4,000 faces
    exact = cluster_average_linkage(emb, 0.55, search=SearchParams(backend="exact"))
    ann = cluster_average_linkage(emb, 0.55, search=IVF)
    report = ann.search
    assert report is not None and report.backend == "ivf"
    assert report.nlist == 32 and report.nprobe == 8 and report.k == 48
    assert report.recall is not None and 0.95 <= report.recall <= 1.0
    assert report.recall_queries == 300
    assert adjusted_rand_score(exact.labels, ann.labels) >= 0.999
    # the IVF graph holds each face's k nearest, so it has fewer pairs than the full graph
    assert 0 < ann.n_edges <= exact.n_edges


def _within(sims: np.ndarray, ids: np.ndarray, row: int, min_sim: float) -> set[int]:
    """A k-nearest row's neighbours (not the face itself) within min_sim."""
    return {int(i) for i, s in zip(ids[row], sims[row], strict=True) if s >= min_sim and i != row}


def test_ivf_self_join_finds_the_ivf_index_search_and_all_lists_the_exact_nearest() -> None:
    emb, _ = identities(300, 25, seed=7)  # about 4,000 faces
    n, nlist, k, min_sim = emb.shape[0], 32, 12, 0.45
    index = neighbours.build_ivf(emb, nlist, 32, seed=0)
    index.nprobe = 8
    want_sims, want_ids = index.search(emb, k + 1)
    probes = neighbours._probes(index.quantizer, emb, 8, batch=1000)
    everyone = np.arange(n)
    sims, ids = neighbours._self_join_knn(
        emb, probes[:, 0], nlist, everyone, probes, k + 1, min_sim, None
    )
    assert sims.shape == ids.shape == (n, k + 1)
    # the same candidates as faiss's IVFFlat search with the same lists and probes
    same = [
        _within(sims, ids, q, min_sim) == _within(want_sims, want_ids, q, min_sim) for q in range(n)
    ]
    assert sum(same) == n
    assert (ids[sims < min_sim] == -1).all()  # slots past the distance stay empty
    # probing every list is the exact k-nearest search within the distance
    every = neighbours._probes(index.quantizer, emb, nlist, batch=1000)
    sims, ids = neighbours._self_join_knn(
        emb, probes[:, 0], nlist, everyone, every, k + 1, min_sim, None
    )
    truth = neighbours.exact_knn_within(emb, np.arange(n), k, min_sim)
    assert all(_within(sims, ids, q, min_sim) == set(truth[q].tolist()) for q in range(n))
    recall, measured = neighbours.measure_recall(emb, ids, sims, k, min_sim, n, seed=0)
    assert recall == 1.0 and measured == n


def test_self_join_in_small_products_finds_the_same_neighbours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A list's probing faces are gathered into one reused buffer, at most ann_join_rows at a
    time: cut into products of 7 faces, the neighbours are those of one product per list, and
    their similarities too up to float32 rounding (BLAS sums a product this small in another
    order)."""
    emb, _ = identities(300, 25, seed=7)  # about 4,000 faces
    n, nlist, k, min_sim = emb.shape[0], 32, 12, 0.45
    index = neighbours.build_ivf(emb, nlist, 32, seed=0)
    probes = neighbours._probes(index.quantizer, emb, 8, batch=1000)
    everyone = np.arange(n)

    def join() -> tuple[np.ndarray, np.ndarray]:
        return neighbours._self_join_knn(
            emb, probes[:, 0], nlist, everyone, probes, k + 1, min_sim, None
        )

    whole_sims, whole_ids = join()
    assert settings.clustering().neighbours.ann_join_rows >= n  # one product per list
    monkeypatch.setenv("FACESETS_NEIGHBOURS__ANN_JOIN_ROWS", "7")
    settings.reset()
    try:
        assert settings.clustering().neighbours.ann_join_rows == 7
        cut_sims, cut_ids = join()
    finally:
        monkeypatch.delenv("FACESETS_NEIGHBOURS__ANN_JOIN_ROWS")
        settings.reset()
    assert (whole_ids >= 0).sum() > n  # neighbours were found, beyond each face itself
    assert np.array_equal(cut_ids, whole_ids)
    assert np.allclose(cut_sims, whole_sims, rtol=0, atol=1e-6)


def test_recall_counts_the_neighbours_an_index_misses() -> None:
    emb, _ = identities(50, 10, seed=4)
    k = 5
    min_sim = 0.45
    queries = np.arange(emb.shape[0])
    truth = neighbours.exact_knn_within(emb, queries, k, min_sim)
    n = emb.shape[0]
    ids = np.full((n, k + 1), -1, np.int64)
    sims = np.full((n, k + 1), -np.inf, np.float32)
    for q, found in enumerate(truth):
        ids[q, : found.size] = found
        sims[q, : found.size] = emb[found] @ emb[q]
    perfect, measured = neighbours.measure_recall(emb, ids, sims, k, min_sim, n, seed=0)
    assert perfect == 1.0 and measured == n
    wanted = sum(t.size for t in truth)
    ids[:, 0] = -1  # drop every query's nearest neighbour
    missed = sum(1 for t in truth if t.size)
    partial, _ = neighbours.measure_recall(emb, ids, sims, k, min_sim, n, seed=0)
    assert partial == pytest.approx((wanted - missed) / wanted)
    # the graph still holds a dropped pair where the neighbour's own list (from its second
    # slot on) holds the face
    back = sum(1 for q, t in enumerate(truth) if t.size and q in truth[t[0]][1:].tolist())
    estimate = neighbours.measure_recalls(emb, ids, sims, k, min_sim, n, seed=0)
    assert estimate.listed == partial
    assert back > 0 and estimate.graph == pytest.approx((wanted - missed + back) / wanted)
    # The interval holds the estimate, and the faces drawn again vary it: it has a width.
    assert estimate.interval is not None
    low, high = estimate.interval
    assert low < partial < high and high - low < 0.2


def test_the_recall_interval_narrows_with_more_sampled_faces() -> None:
    """Faces missing half their neighbours at random: the interval of 400 sampled faces holds
    the recall of all of them, and is narrower than that of 50."""
    emb, _ = identities(200, 10, seed=7)
    k = 5
    min_sim = 0.45
    n = emb.shape[0]
    truth = neighbours.exact_knn_within(emb, np.arange(n), k, min_sim)
    ids = np.full((n, k + 1), -1, np.int64)
    sims = np.full((n, k + 1), -np.inf, np.float32)
    keep = np.random.default_rng(8)
    for q, found in enumerate(truth):
        kept = found[keep.random(found.size) < 0.5]
        ids[q, : kept.size] = kept
        sims[q, : kept.size] = emb[kept] @ emb[q]
    everyone = neighbours.measure_recalls(emb, ids, sims, k, min_sim, n, seed=0)
    assert everyone.listed is not None and 0.3 < everyone.listed < 0.7
    widths = {}
    for queries in (50, 400):
        sampled = neighbours.measure_recalls(emb, ids, sims, k, min_sim, queries, seed=3)
        assert sampled.interval is not None and sampled.queries == queries
        low, high = sampled.interval
        assert low <= sampled.listed <= high  # type: ignore[operator]
        widths[queries] = high - low
    assert low <= everyone.listed <= high  # the 400 faces' interval holds all 2,000's recall
    assert widths[400] < widths[50] / 2


def centroid_case() -> tuple[np.ndarray, np.ndarray]:
    """(2,200 new faces: 2,000 near known identities, 200 unrelated; 400 identity centroids)."""
    emb, truth = identities(400, 20, seed=5, loose=0)
    centroids = np.stack([emb[truth == i].mean(axis=0) for i in range(400)])
    rng = np.random.default_rng(6)
    new = emb[rng.choice(emb.shape[0], 2000, replace=False)]
    new = new + 0.02 * rng.standard_normal(new.shape).astype(np.float32)
    noise = rng.standard_normal((200, emb.shape[1])).astype(np.float32)
    return np.vstack([new, noise]), centroids


def test_nearest_centroid_through_the_flat_index_equals_the_exact_one() -> None:
    new, centroids = centroid_case()
    exact_rows, exact_dist = nearest_centroid(new, centroids, 0.55, SearchParams("exact"))
    rows, dist = nearest_centroid(new, centroids, 0.55)  # auto: few centroids, flat index
    np.testing.assert_array_equal(rows, exact_rows)
    joined = rows >= 0
    np.testing.assert_allclose(dist[joined], exact_dist[joined], atol=1e-5)
    assert joined[:2000].mean() > 0.9 and joined[2000:].mean() < 0.1


def test_nearest_centroid_through_an_ivf_index_mostly_agrees_and_fully_probed_equals() -> None:
    new, centroids = centroid_case()
    exact_rows, _ = nearest_centroid(new, centroids, 0.55, SearchParams("exact"))
    params = SearchParams(backend="ivf", nlist=16, nprobe=4)
    rows, _ = nearest_centroid(new, centroids, 0.55, params)
    assert (rows == exact_rows).mean() >= 0.97  # the misses: nearest centroid in a list unprobed
    every_list = SearchParams(backend="ivf", nlist=16, nprobe=16)
    np.testing.assert_array_equal(nearest_centroid(new, centroids, 0.55, every_list)[0], exact_rows)


def test_cluster_manifest_records_the_index_and_its_recall(
    tmp_path: Path, lfw_dir: Path, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = lfw_people(lfw_dir, 4, 6)
    store = new_store(tmp_path / "faces.db")
    add_photos(store, [p for ps in people.values() for p in ps], model_root)
    exact_out, ivf_out = tmp_path / "exact", tmp_path / "ivf"
    cluster(store, exact_out)
    neighbours = settings.clustering().neighbours
    monkeypatch.setattr(neighbours, "ann_min_faces", 0)  # every store searches an IVF index
    monkeypatch.setattr(neighbours, "ann_nlist", 2)
    monkeypatch.setattr(neighbours, "ann_nprobe", 2)
    cluster(store, ivf_out)
    store.close()
    exact = json.loads((exact_out / layout.CLUSTER_MANIFEST).read_text(encoding="utf-8"))
    ivf = json.loads((ivf_out / layout.CLUSTER_MANIFEST).read_text(encoding="utf-8"))
    assert exact["search"]["backend"] == "flat" and exact["search"]["recall"] == 1.0
    assert ivf["search"]["backend"] == "ivf"
    assert ivf["search"]["nprobe"] == ivf["search"]["nlist"] >= 1
    assert ivf["search"]["recall"] == 1.0  # every list probed: the search is exhaustive
    assert ivf["search"]["recall_queries"] == len(ivf["faces"])
    # every list probed: the neighbours of neighbours add nothing the lists lack
    assert ivf["search"]["hop_found"] == 0 and ivf["search"]["hop_faces"] >= 0
    assert [p["face_ids"] for p in ivf["persons"]] == [p["face_ids"] for p in exact["persons"]]


def large_identity(
    faces: int, blurred: int, loose: int, dim: int = 64, seed: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(unit float32 embeddings, blurred mask): one identity of `faces` faces, `blurred` of them
    pulled along one common direction (they find each other first), and loose faces."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(dim)
    centre /= np.linalg.norm(centre)
    pull = rng.standard_normal(dim)
    pull /= np.linalg.norm(pull)
    sigma = rng.uniform(0.5, 0.8, faces)[:, None]
    emb = centre + sigma * rng.standard_normal((faces, dim)) / np.sqrt(dim)
    emb[:blurred] += pull
    emb = np.vstack([emb, rng.standard_normal((loose, dim))])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    mask = np.zeros(emb.shape[0], bool)
    mask[:blurred] = True
    return emb.astype(np.float32), mask


def test_dense_faces_searched_again_over_more_lists_reach_the_exact_nearest() -> None:
    emb, _ = large_identity(2000, 0, 0)  # one identity over all the lists: every face dense
    k, min_sim = 16, float(np.float32(0.45))
    few = SearchParams(backend="ivf", nlist=32, nprobe=2, dense_nprobe=2, k=k, recall_queries=300)
    _, alone = neighbours.ivf_knn_edges(emb, 0.55, few)
    assert alone.dense_faces == 0 and alone.recall is not None and alone.recall < 0.9
    more = SearchParams(backend="ivf", nlist=32, nprobe=2, dense_nprobe=32, k=k, recall_queries=300)
    (ei, ej, _), report = neighbours.ivf_knn_edges(emb, 0.55, more)
    assert report.dense_faces == 2000 and report.dense_nprobe == 32
    assert report.truncated is not None and report.truncated.all()
    assert report.recall == 1.0 and report.recall_queries == 300
    assert report.as_json()["dense_faces"] == 2000
    # every identity face's exact k nearest are pairs of the graph
    pairs = set(zip(ei.tolist(), ej.tolist(), strict=True))
    truth = neighbours.exact_knn_within(emb, np.arange(2000), k, min_sim)
    for q, found in enumerate(truth):
        assert found.size == k
        assert all((min(q, j), max(q, j)) in pairs for j in found.tolist())


def test_clusters_split_by_truncated_lists_are_completed_as_the_exact_search_joins_them() -> None:
    emb, blurred = large_identity(300, 40, 200)
    exact = cluster_average_linkage(emb, 0.55, search=SearchParams(backend="flat"))
    assert np.unique(exact.labels[:300]).size == 1  # one person, blurred faces included
    # every list probed: only the truncation to k nearest leaves pairs out
    ivf = SearchParams(backend="ivf", nlist=4, nprobe=4, dense_nprobe=4, k=8)
    ei, ej, _, report = linkage.search_graph(emb, 0.55 + linkage.EDGE_MARGIN, ivf)
    crossing = blurred[ei] != blurred[ej]
    assert not crossing[(ei < 300) & (ej < 300)].any()  # the graph splits the person in two
    assert report.truncated is not None and report.truncated[:300].all()
    result = cluster_average_linkage(emb, 0.55, search=ivf)
    assert result.search is not None and result.search.completed == 1
    assert result.search.as_json()["completed_merges"] == 1
    np.testing.assert_array_equal(result.labels, exact.labels)
    # cannot-link holds in the completion: a blurred and a sharp face from one photo
    photo = np.arange(emb.shape[0])
    photo[299] = photo[0]
    held = cluster_average_linkage(emb, 0.55, search=ivf, photo=photo)
    assert held.labels[0] != held.labels[299]
    assert held.prevented >= 1 and held.search is not None and held.search.completed == 0
    flat = cluster_average_linkage(emb, 0.55, search=SearchParams(backend="flat"), photo=photo)
    assert flat.labels[0] != flat.labels[299]


def test_faces_with_room_in_their_list_gain_the_neighbours_of_their_neighbours() -> None:
    emb, _ = identities(300, 25, seed=11)  # about 4,000 faces, identities smaller than k
    n, k, min_sim = emb.shape[0], 48, float(np.float32(0.45))
    few = dict(backend="ivf", nlist=32, nprobe=3, dense_nprobe=3, k=k, recall_queries=n)
    _, alone = neighbours.ivf_knn_edges(emb, 0.55, SearchParams(**few, hop_rounds=0))
    assert alone.hop_faces == alone.hop_found == 0
    assert alone.recall is not None and alone.recall < 0.9  # 3 of 32 lists miss neighbours
    (ei, ej, es), report = neighbours.ivf_knn_edges(emb, 0.55, SearchParams(**few, hop_rounds=2))
    assert report.recall is not None and report.recall >= 0.99
    assert report.graph_recall is not None and report.graph_recall >= report.recall
    assert report.hop_found > 0 and 0 < report.hop_faces <= n
    assert report.as_json()["hop_found"] == report.hop_found
    # every pair is a real one: its similarity is the faces' and within the distance
    np.testing.assert_allclose(es, np.einsum("ij,ij->i", emb[ei], emb[ej]), atol=1e-5)
    assert (es >= min_sim).all() and (ei < ej).all()
    truth = neighbours.exact_knn_within(emb, np.arange(n), k, min_sim)
    wanted = {(min(q, int(j)), max(q, int(j))) for q, t in enumerate(truth) for j in t}
    pairs = set(zip(ei.tolist(), ej.tolist(), strict=True))
    assert len(wanted & pairs) >= 0.99 * len(wanted)


def test_faces_with_room_are_searched_again_over_the_dense_lists() -> None:
    emb, _ = identities(300, 25, seed=11)  # about 4,000 faces, identities smaller than k
    n, k, min_sim = emb.shape[0], 48, float(np.float32(0.45))
    # the second pass probes every list: the lists it gives are exact
    base = dict(backend="ivf", nlist=32, nprobe=2, dense_nprobe=32, k=k, recall_queries=n)
    truth = neighbours.exact_knn_within(emb, np.arange(n), k, min_sim)

    def lists(params: SearchParams) -> tuple[dict[int, set[int]], neighbours.SearchReport]:
        (ei, ej, _), report = neighbours.ivf_knn_edges(emb, 0.55, params)
        held: dict[int, set[int]] = {q: set() for q in range(n)}
        for a, b in zip(ei.tolist(), ej.tolist(), strict=True):
            held[a].add(b)
            held[b].add(a)
        return held, report

    def missing(held: dict[int, set[int]]) -> int:
        """Faces with a neighbour whose exact nearest the graph does not all hold."""
        return sum(bool(truth[q].size) and not set(truth[q].tolist()) <= held[q] for q in range(n))

    held_without, without = lists(SearchParams(**base, hop_rounds=0, room_again=False))
    assert without.room_faces == 0 and without.recall is not None and without.recall < 0.9
    held, report = lists(SearchParams(**base, hop_rounds=0, room_again=True))
    assert 0 < report.room_faces <= n and report.as_json()["room_faces"] == report.room_faces
    assert report.room_faces + report.dense_faces == n  # every face, full or with room
    assert report.recall is not None and report.recall > without.recall
    # Every face searched again over every list holds its exact nearest.
    assert missing(held) == 0 < missing(held_without)
