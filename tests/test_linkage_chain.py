"""The nearest-neighbour chain (`clustering/chain.py`) that links the large sparse tasks.

Forced onto every sparse task (setting `linkage.chain_min_pairs` 0), it must give
scikit-learn's labels, the greedy constrained reference's labels under cannot-link, and the
same labels and prevented merges as the reciprocal-nearest-neighbour rounds it replaces, with
ties, duplicates, many components, cluster-level inputs and star-shaped components (one
cluster absorbing many). A clustering service started with the setting links by the chain and
says so in the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import free_port
from store_fixtures import add_photos, copy_photos, lfw_slice, new_store
from test_cannot_link import greedy_reference
from test_linkage import faces, reference
from test_linkage_compact import store

from facesets.client import ClusteringClient, Endpoint
from facesets.clustering import chain, linkage
from facesets.clustering.linkage import METHOD_CHAIN, METHOD_SPARSE, cluster_average_linkage
from facesets.common import settings
from facesets.contract import layout
from facesets.contract.clustering import ClusterParams, ClusterRequest
from services import ServiceProcess


def count_chains(monkeypatch: pytest.MonkeyPatch, min_pairs: int) -> list[int]:
    """Chain tasks from `min_pairs` pairs on; the returned list grows by each chain's clusters."""
    calls: list[int] = []
    real: Callable[..., Any] = chain.chain_linkage

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(int(args[1].size))
        return real(*args, **kwargs)

    monkeypatch.setattr(settings.clustering().linkage, "chain_min_pairs", min_pairs)
    monkeypatch.setattr(chain, "chain_linkage", counted)
    return calls


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("threshold", [0.3, 0.55, 0.8])
def test_chain_matches_sklearn(
    monkeypatch: pytest.MonkeyPatch, seed: int, threshold: float
) -> None:
    emb, _ = faces(seed)
    calls = count_chains(monkeypatch, 0)
    expected = reference(emb, threshold)
    for x in (emb, emb.astype(np.float32)):
        result = cluster_average_linkage(x, threshold, dense_max=2)
        np.testing.assert_array_equal(result.labels, expected)
    assert METHOD_SPARSE not in result.method_counts()  # every sparse task took the chain
    if METHOD_CHAIN in result.method_counts():
        assert calls


def test_chain_on_one_large_chained_component_and_on_ties() -> None:
    emb, _ = faces(7, identities=60, dim=32, spread=(1.0, 1.4))
    with pytest.MonkeyPatch.context() as mp:
        calls = count_chains(mp, 0)
        result = cluster_average_linkage(emb, 0.6, dense_max=40)
        np.testing.assert_array_equal(result.labels, reference(emb, 0.6))
        assert max(calls) > emb.shape[0] // 3  # the large component went through the chain
        dup, _ = faces(11, identities=12)
        dup = np.vstack([dup, dup[:10], dup[:3]])  # the same photos again: distance-0 ties
        tied = cluster_average_linkage(dup, 0.5, dense_max=2)
    np.testing.assert_array_equal(tied.labels, reference(dup, 0.5))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_chain_equals_the_greedy_constrained_linkage(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    emb, photo = store(seed, copies=1)
    calls = count_chains(monkeypatch, 0)
    result = cluster_average_linkage(emb, 0.55, dense_max=2, photo=photo)
    assert calls
    np.testing.assert_array_equal(result.labels, greedy_reference(emb, 0.55, photo))
    assert result.prevented > 0
    for k in np.unique(result.labels):
        held = photo[result.labels == k]
        assert np.unique(held).size == held.size  # no photo twice in one cluster


@pytest.mark.parametrize("seed", [3, 4])
def test_chain_gives_the_rounds_labels_and_prevented_merges(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    emb, photo = store(seed, copies=6)
    runs = []
    for min_pairs in (10**12, 0):  # the rounds everywhere, then the chain everywhere
        calls = count_chains(monkeypatch, min_pairs)
        runs.append(cluster_average_linkage(emb, 0.55, dense_max=2, photo=photo))
        assert bool(calls) == (min_pairs == 0)
    rounds, chained = runs
    assert rounds.prevented > 0
    np.testing.assert_array_equal(chained.labels, rounds.labels)
    assert chained.prevented == rounds.prevented


def star(seed: int, leaves: int = 800, dim: int = 256) -> np.ndarray:
    """One tight core and many faces each near the core only: the core absorbs them one by one,
    the shape where the rounds merge one pair a round."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(dim)
    centre /= np.linalg.norm(centre)
    core = centre + 0.3 * rng.standard_normal((400, dim)) / np.sqrt(dim)
    # Leaves 0.30 to 0.50 from the centre, each in a direction of its own: about 0.5 to 0.75
    # from one another, so most have the core as their only neighbour.
    side = rng.standard_normal((leaves, dim))
    side -= (side @ centre)[:, None] * centre
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    angle = np.arccos(1.0 - rng.uniform(0.30, 0.50, leaves))
    out = np.cos(angle)[:, None] * centre + np.sin(angle)[:, None] * side
    return np.vstack([core, out])


def test_chain_on_a_star_component_equals_the_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    emb = star(2)
    runs = []
    for min_pairs in (10**12, 0):
        count_chains(monkeypatch, min_pairs)
        runs.append(cluster_average_linkage(emb, 0.55, dense_max=2))
    rounds, chained = runs
    np.testing.assert_array_equal(chained.labels, rounds.labels)
    sizes = np.bincount(rounds.labels)
    assert sizes[0] > 800 and rounds.n_clusters > 1  # the core absorbed most faces, not all


def test_cluster_level_input_with_cannot_link_equals_the_rounds() -> None:
    """Clusters given by sum vectors and sizes (as the completion of truncated clusters gives
    them): the chain and the rounds agree on roots and prevented merges."""
    rng = np.random.default_rng(8)
    emb, truth = faces(9, identities=40)
    labels = truth * 3 + rng.integers(0, 3, truth.size)  # each identity in up to three parts
    ids = np.unique(labels)
    sums = np.zeros((ids.size, emb.shape[1]))
    np.add.at(sums, np.searchsorted(ids, labels), emb)
    sizes = np.bincount(np.searchsorted(ids, labels)).astype(np.float64)
    a, b = np.triu_indices(ids.size, 1)
    dist = 1.0 - np.einsum("ij,ij->i", sums[a], sums[b]) / (sizes[a] * sizes[b])
    near = dist < 0.9
    closest = np.argsort(np.where(near, dist, np.inf))[:60:4]  # some pairs that would merge
    blocked = (a[closest], b[closest])
    out = []
    for min_pairs in (10**12, 0):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(settings.clustering().linkage, "chain_min_pairs", min_pairs)
            out.append(
                linkage._linkage_of_clusters(
                    sums.copy(), sizes.copy(), a[near], b[near], dist[near], 0.55, cannot=blocked
                )
            )
    (roots_r, prevented_r), (roots_c, prevented_c) = out
    np.testing.assert_array_equal(
        linkage.canonical_labels(roots_c)[0], linkage.canonical_labels(roots_r)[0]
    )
    assert prevented_c == prevented_r > 0
    assert np.unique(roots_r).size < ids.size  # clusters did merge


def test_large_tasks_take_the_chain_and_small_ones_the_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emb, _ = faces(7, identities=60, dim=32, spread=(1.0, 1.4))
    default = count_chains(monkeypatch, settings.LinkageSettings().chain_min_pairs)
    rounds = cluster_average_linkage(emb, 0.6, dense_max=2)
    assert default == []  # a few hundred pairs: the rounds
    assert METHOD_SPARSE in rounds.method_counts() and METHOD_CHAIN not in rounds.method_counts()
    forced = count_chains(monkeypatch, 1)
    chained = cluster_average_linkage(emb, 0.6, dense_max=2)
    assert forced
    assert METHOD_CHAIN in chained.method_counts() and METHOD_SPARSE not in chained.method_counts()
    np.testing.assert_array_equal(chained.labels, rounds.labels)


def test_a_clustering_service_set_to_chain_links_by_it_with_the_rounds_clusters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lfw_dir: Path, model_root: Path
) -> None:
    """Two real clustering services over one LFW store, through the client library: one with
    its default (the store's tasks are small: the rounds), one started with
    FACESETS_LINKAGE__CHAIN_MIN_PAIRS=0 (every sparse task by the chain, compiled and cached in
    that process). The same persons, and each manifest names the method it used."""
    people = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")
    photos = copy_photos(lfw_slice(lfw_dir, people, 12), tmp_path / "photos")
    store = new_store(tmp_path / "faces.db")
    add_photos(store, [p for group in photos.values() for p in group], model_root)
    store.close()
    manifests = []
    for name, env in (("rounds", None), ("chain", "0")):
        if env is not None:
            monkeypatch.setenv("FACESETS_LINKAGE__CHAIN_MIN_PAIRS", env)
        service = ServiceProcess("clustering", free_port(), tmp_path / f"{name}.log").start()
        client = ClusteringClient(Endpoint(service.address))
        try:
            request = ClusterRequest(
                tmp_path / "faces.db", tmp_path / name, ClusterParams(dense_max=2)
            )
            events = list(client.run(request))
        finally:
            client.close()
            service.stop()
        assert events[-1].WhichOneof("event") == "done", events[-1]
        manifests.append(json.loads((tmp_path / name / layout.CLUSTER_MANIFEST).read_text()))
    rounds, chained = manifests
    assert "sparse-exact" in rounds["components"]["methods"]
    assert "sparse-chain" not in rounds["components"]["methods"]
    assert "sparse-chain" in chained["components"]["methods"]
    assert "sparse-exact" not in chained["components"]["methods"]

    def persons(manifest: dict) -> list[list[int]]:
        return sorted(sorted(p["face_ids"]) for p in manifest["persons"])

    assert persons(chained) == persons(rounds)
    assert len(persons(rounds)) >= len(people)
