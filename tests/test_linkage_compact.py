"""The sparse linkage's renumbering of the clusters still merging (`linkage._compact`).

Renumbering keeps the ids' order, so it must change nothing: the labels equal scikit-learn's
(and the greedy constrained reference under cannot-link) with the renumbering done after
nearly every round, and equal the labels and prevented merges of the rounds without it on
stores of many components, ties and shared photos.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_cannot_link import greedy_reference
from test_linkage import faces, reference

from facesets.clustering import linkage
from facesets.clustering.linkage import cluster_average_linkage


def count_compactions(monkeypatch: pytest.MonkeyPatch, compact_min: int) -> list[int]:
    """Renumber from `compact_min` ids on; the returned list grows by the ids left each time."""
    calls: list[int] = []
    real: Callable[..., Any] = linkage._compact

    def counted(*args: Any) -> Any:
        out = real(*args)
        calls.append(int(out[-1].size))
        return out

    monkeypatch.setattr(linkage, "COMPACT_MIN", compact_min)
    monkeypatch.setattr(linkage, "_compact", counted)
    return calls


def store(seed: int, copies: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Several independent stores side by side (many components) plus exact duplicates (ties),
    and photos: about one face in five shares its photo with a random other face."""
    parts = [faces(seed * 10 + k, identities=40)[0] for k in range(copies)]
    emb = np.vstack(parts)
    emb = np.vstack([emb, emb[:15]])  # the same photos ingested again: distance-0 ties
    rng = np.random.default_rng(seed)
    photo = np.arange(emb.shape[0])
    for _ in range(emb.shape[0] // 5):
        i, j = rng.choice(emb.shape[0], 2, replace=False)
        photo[photo == photo[j]] = photo[i]
    return emb, photo


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.45, 0.6])
def test_renumbering_every_round_matches_sklearn(
    monkeypatch: pytest.MonkeyPatch, seed: int, threshold: float
) -> None:
    emb, _ = store(seed)
    calls = count_compactions(monkeypatch, 2)
    result = cluster_average_linkage(emb, threshold, dense_max=2)
    np.testing.assert_array_equal(result.labels, reference(emb, threshold))
    assert len(calls) >= 2 and calls[-1] < emb.shape[0] // 20


@pytest.mark.parametrize("seed", [0, 1])
def test_renumbering_every_round_matches_the_greedy_constrained_linkage(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    emb, photo = store(seed, copies=1)
    calls = count_compactions(monkeypatch, 2)
    result = cluster_average_linkage(emb, 0.55, dense_max=2, photo=photo)
    np.testing.assert_array_equal(result.labels, greedy_reference(emb, 0.55, photo))
    assert calls and result.prevented > 0


@pytest.mark.parametrize("seed", [3, 4])
def test_renumbering_changes_no_label_nor_prevented_merge(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    emb, photo = store(seed, copies=6)
    runs = []
    for compact_min in (emb.shape[0], 2, 64):  # never, nearly every round, the larger ones
        calls = count_compactions(monkeypatch, compact_min)
        runs.append((cluster_average_linkage(emb, 0.55, dense_max=2, photo=photo), len(calls)))
    (never, none), (often, many), (some, few) = runs
    assert none == 0 and many > few > 0
    assert never.prevented > 0
    for result in (often, some):
        np.testing.assert_array_equal(result.labels, never.labels)
        assert result.prevented == never.prevented


@pytest.mark.parametrize("seed", [3, 4])
def test_large_components_linked_as_tasks_on_threads_give_one_linkage_s_labels(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """The large components are linked as tasks on a pool of threads, one component each or
    small ones bundled: the labels and prevented merges are those of one linkage over all of
    them, with cannot-link pairs and ties."""
    emb, photo = store(seed, copies=6)
    monkeypatch.setattr(linkage.settings, "usable_cores", lambda: 4)
    tasks: list[int] = []
    real: Callable[..., Any] = linkage._linkage_tasks

    def counted(*args: Any) -> Any:
        out = real(*args)
        tasks.append(len(out))
        return out

    monkeypatch.setattr(linkage, "_linkage_tasks", counted)
    runs = []
    for bundles in (0.01, 10**9):  # every component in one task, then one task per component
        monkeypatch.setattr(linkage, "BUNDLES_PER_THREAD", bundles)
        runs.append(cluster_average_linkage(emb, 0.55, dense_max=2, photo=photo))
    one, several = runs
    assert tasks[0] == 1 and tasks[1] == sum(
        1 for c in one.components if c.method == "sparse-exact"
    )
    assert tasks[1] >= 4
    assert one.prevented > 0
    np.testing.assert_array_equal(several.labels, one.labels)
    assert several.prevented == one.prevented
    np.testing.assert_array_equal(several.labels, greedy_reference(emb, 0.55, photo))


def test_two_face_components_decided_together_as_one_by_one() -> None:
    """Two-face components are decided in one vectorised pass: the same decisions as the
    per-component scipy path, for distances spread across the threshold and exactly on it."""
    rng = np.random.default_rng(5)
    threshold = 0.55
    a = rng.normal(size=(600, 64))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    noise = rng.normal(size=a.shape)
    noise -= np.einsum("ij,ij->i", noise, a)[:, None] * a  # orthogonal to each a
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    angle = np.arccos(1.0 - rng.uniform(threshold - 0.05, threshold + 0.05, a.shape[0]))
    angle[:100] = np.arccos(1.0 - threshold)  # on the threshold, up to rounding
    b = np.cos(angle)[:, None] * a + np.sin(angle)[:, None] * noise
    x = np.concatenate([a, b * rng.uniform(0.5, 2.0, (a.shape[0], 1))])  # any lengths
    first = np.arange(a.shape[0])
    second = first + a.shape[0]
    together = linkage._pairs_joined(x, first, second, threshold)
    one_by_one = np.array(
        [
            linkage._dense_average_linkage(x[[f, s]], threshold)[1] == 0
            for f, s in zip(first, second, strict=True)
        ]
    )
    np.testing.assert_array_equal(together, one_by_one)
    assert 0 < together.sum() < together.size  # both decisions occur
