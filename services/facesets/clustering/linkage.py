"""Average-linkage face clustering that scales past a dense distance matrix.

The result equals `sklearn.cluster.AgglomerativeClustering(n_clusters=None, metric="cosine",
linkage="average", distance_threshold=t)`: clusters are merged while their average cosine
distance is below t. Two facts make it scale:

1. Two clusters whose average distance is below t have at least one pair of faces closer than
   t, so every final cluster lies inside one connected component of the graph of face pairs
   closer than t. That graph is found with blocked matrix products (memory stays bounded) and
   each component is clustered on its own; most are single faces or small.
2. For unit vectors the average cosine similarity of clusters A and B is S_A.S_B / (|A| |B|),
   S being the sum of a cluster's vectors. So the exact average-linkage distance of any two
   clusters costs one dot product, and large components are clustered over their sparse
   graph alone (`_sparse_average_linkage`), with memory O(edges + faces x dim). A merged
   pair that lacks some of its old pairs carries bounds (each missing face pair's similarity
   in [-1, 1]) and is summed from the sum vectors only when the bounds leave its nearness to
   the threshold or to either cluster's nearest neighbour open, so the merges stay exact.
   Large tasks take the nearest-neighbour chain over the same pairs (`chain.py`, compiled):
   a merge there does work only on the pairs of the two clusters merged.

Inputs are (n, d) arrays of embeddings (normalised here in float64 for the linkage itself).
Similarities of the neighbour search are computed in the input's dtype: float32 input gives
pairwise similarities rounded to float32 (about 1e-6), float64 input reproduces scipy's
float64 distances.

Cannot-link: an optional per-face group array (`photo`: faces with one value come from one
photo) or explicit row pairs (`cannot`) name faces that are never one cluster. A linkage that
would merge two clusters holding such a pair skips that merge and goes on with the next best
ones: the pair counts as infinitely far apart, and so does every cluster either side later
joins. Average linkage stays reducible under that distance (a union is never nearer to a third
cluster than the nearer of its parts), so the reciprocal-nearest-neighbour rounds of the sparse
method still give the greedy result; components holding a constrained pair take that method.
Where no pair is constrained the result is the same as without the constraint.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import structlog
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from facesets.clustering import neighbours
from facesets.clustering.neighbours import SearchParams, SearchReport
from facesets.common import settings
from facesets.common.vectors import unit_rows
from facesets.contract import defaults

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]

ROW_BLOCK = 2048  # rows of one block of the neighbour search
COL_BLOCK = 8192  # columns of one block: ROW_BLOCK x COL_BLOCK similarities at a time (64 MiB)
EDGE_MARGIN = 1e-4  # candidate edges reach this far past the threshold, against rounding
# Pairs whose dot products are gathered at once: small enough that both gathered blocks stay in
# cache for the product (1,024 pairs of 512-d float64 rows, 8 MiB; 16,384 at once is ~6x slower).
PAIR_CHUNK = 1024
BOUND_SLACK = 1e-9  # distance bounds of the sparse linkage are widened by this, against rounding
# The sparse linkage renumbers its clusters once fewer than half of its ids still have a pair,
# above this many ids: each round's per-cluster arrays then cost the clusters still merging only.
COMPACT_MIN = 1024
# Large components are linked on at most this many threads (and no more than the usable cores).
LINKAGE_THREADS_MAX = 4
# Tasks of about (pairs of the large components) / (threads x this): a larger component is a
# task of its own, smaller ones are bundled. Few tasks keep the rounds' arrays large (numpy then
# works without the GIL) and pay each round's fixed cost once for many components; more than one
# per thread lets a thread that comes free take the next one.
BUNDLES_PER_THREAD = 2.0

METHOD_SINGLETON = "singleton"
METHOD_DENSE = "dense"
METHOD_SPARSE = "sparse-exact"
METHOD_CHAIN = "sparse-chain"  # the exact sparse linkage by the nearest-neighbour chain


@dataclass(frozen=True)
class ComponentInfo:
    """One connected component of the neighbour graph and how it was clustered."""

    first: int  # smallest face index in the component
    size: int
    clusters: int
    method: str  # METHOD_SINGLETON | METHOD_DENSE | METHOD_SPARSE | METHOD_CHAIN


@dataclass
class ClusterResult:
    labels: np.ndarray  # int64 per face; 0 is the largest cluster, ties by smallest member
    components: list[ComponentInfo]
    n_clusters: int
    n_edges: int  # candidate pairs found by the neighbour search
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per label
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    search: SearchReport | None = None  # how the neighbour graph was found (and its recall)
    prevented: int = 0  # merges skipped because the two clusters shared a photo

    @property
    def n_singletons(self) -> int:
        return int(np.count_nonzero(self.sizes == 1))

    @property
    def largest_component(self) -> int:
        return max((c.size for c in self.components), default=0)

    def method_counts(self) -> dict[str, int]:
        return dict(Counter(c.method for c in self.components))


# --- input checks and small utilities ----------------------------------------------------------


def _row_norms(x: np.ndarray) -> np.ndarray:
    """Float64 row norms, in chunks so no full-size temporary is made."""
    out = np.empty(x.shape[0], np.float64)
    step = PAIR_CHUNK  # rows converted at a time: cache-sized
    for s in range(0, x.shape[0], step):
        block = x[s : s + step].astype(np.float64)
        out[s : s + step] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def _check_embeddings(emb: np.ndarray) -> np.ndarray:
    arr = np.asarray(emb)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array (faces x dim), got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    if arr.shape[0] and arr.shape[1] == 0:
        raise ValueError("embeddings have dimension 0")
    if not np.isfinite(_row_norms(arr)).all():  # a NaN or inf anywhere spreads to its norm
        raise ValueError("embeddings contain NaN or infinite values")
    return np.ascontiguousarray(arr)


def _check_threshold(threshold: float, name: str = "threshold") -> float:
    t = float(threshold)
    if not 0.0 < t <= 2.0:
        raise ValueError(f"{name} must be a cosine distance in (0, 2], got {threshold}")
    return t


def _unit_rows(x: np.ndarray, dtype: type[np.floating] = np.float64) -> np.ndarray:
    if np.any(_row_norms(x) == 0):
        raise ValueError("embeddings contain all-zero rows; cosine distance is undefined")
    return unit_rows(x, dtype)


def _as_unit_rows(x: np.ndarray) -> np.ndarray:
    """`x` with unit rows; a copy only when some row is not already unit length."""
    norms = _row_norms(x)
    if np.any(norms == 0):
        raise ValueError("embeddings contain all-zero rows; cosine distance is undefined")
    tol = 1e-6 if x.dtype == np.float32 else 1e-12
    if np.all(np.abs(norms - 1.0) <= tol):
        return x
    return (x / norms[:, None]).astype(x.dtype, copy=False)


def canonical_labels(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber cluster ids: 0 is the largest, ties by smallest member index; -1 stays -1.

    Returns (labels, sizes) with sizes[k] the member count of cluster k.
    """
    raw = np.asarray(raw)
    out = np.full(raw.shape[0], -1, dtype=np.int64)
    valid = raw >= 0
    if not valid.any():
        return out, np.zeros(0, np.int64)
    idx = np.flatnonzero(valid)
    uniq, first, inverse, counts = np.unique(
        raw[idx], return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((idx[first], -counts))  # size desc, then smallest member
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    out[idx] = rank[inverse]
    return out, counts[order].astype(np.int64)


def _roots(parent: np.ndarray) -> np.ndarray:
    """Resolve a union forest given as parent pointers (parent[i] == i at roots)."""
    parent = parent.copy()
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


Pairs = tuple[np.ndarray, np.ndarray]


def _empty_pairs() -> Pairs:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


def photo_codes(photo: np.ndarray, n: int, name: str = "photo") -> np.ndarray:
    """Dense int64 codes of a per-face group array (one value per face)."""
    arr = np.asarray(photo)
    if arr.shape != (n,):
        raise ValueError(f"{name} must hold one value per face: {arr.shape} for {n} faces")
    return np.unique(arr, return_inverse=True)[1].astype(np.int64).reshape(n)


def cannot_link_pairs(photo: np.ndarray | None, n: int) -> Pairs:
    """Row pairs i < j with the same `photo` value (faces of one photo): never one cluster."""
    if photo is None or n < 2:
        return _empty_pairs()
    codes = photo_codes(photo, n)
    counts = np.bincount(codes)
    rows = np.flatnonzero(counts[codes] > 1)
    if rows.size == 0:
        return _empty_pairs()
    rows = rows[np.argsort(codes[rows], kind="stable")]
    bounds = np.flatnonzero(np.diff(codes[rows], prepend=-1, append=-1))
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        a, b = np.triu_indices(int(e - s), 1)
        found_i.append(rows[s + a])
        found_j.append(rows[s + b])
    return np.concatenate(found_i), np.concatenate(found_j)


def _check_pairs(cannot: Pairs | None, n: int) -> Pairs:
    """Explicit cannot-link pairs as (i, j) with i < j, distinct, within range."""
    if cannot is None:
        return _empty_pairs()
    a = np.asarray(cannot[0], np.int64).reshape(-1)
    b = np.asarray(cannot[1], np.int64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError("cannot-link pairs must be two arrays of one length")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
        raise ValueError(f"cannot-link pairs must name rows in [0, {n})")
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    key = np.unique(lo * max(n, 1) + hi)
    return key // max(n, 1), key % max(n, 1)


def _pair_keys(a: np.ndarray, b: np.ndarray, m: int) -> np.ndarray:
    return np.minimum(a, b).astype(np.int64) * m + np.maximum(a, b)


# --- neighbour graph ---------------------------------------------------------------------------


def neighbour_edges(
    emb: np.ndarray,
    max_distance: float,
    *,
    progress: Progress | None = None,
    row_block: int = ROW_BLOCK,
    col_block: int = COL_BLOCK,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with cosine distance <= max_distance, as (i, j, similarity).

    Blocked products over the upper triangle: memory is one row_block x col_block block plus
    the edges found (int32 indices, similarities in the input's float dtype). Rows that are
    not unit length are normalised (a copy).
    """
    emb = _as_unit_rows(_check_embeddings(emb))
    n = emb.shape[0]
    if n >= np.iinfo(np.int32).max:
        raise ValueError(f"too many faces for int32 edge indices: {n}")
    min_sim = emb.dtype.type(1.0 - max_distance)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    found_s: list[np.ndarray] = []
    blocks = max(1, -(-n // row_block))
    for b, r0 in enumerate(range(0, n, row_block)):
        r1 = min(n, r0 + row_block)
        rows = emb[r0:r1]
        for c0 in range(r0, n, col_block):
            c1 = min(n, c0 + col_block)
            sims = rows @ emb[c0:c1].T
            ii, jj = np.divmod(np.flatnonzero(sims >= min_sim), c1 - c0)  # 2-d nonzero is slow
            if c0 < r1:  # the block meets the diagonal: keep the strict upper triangle
                keep = jj + c0 > ii + r0
                ii, jj = ii[keep], jj[keep]
            if ii.size:
                found_s.append(sims[ii, jj])
                found_i.append((ii + r0).astype(np.int32))
                found_j.append((jj + c0).astype(np.int32))
            del sims
        if progress is not None:
            progress(b + 1, blocks)
    if not found_i:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, emb.dtype)
    out = []
    for parts in (found_i, found_j, found_s):  # one array's blocks held twice at a time
        out.append(np.concatenate(parts))
        parts.clear()
    return out[0], out[1], out[2]


def search_graph(
    unit: np.ndarray,
    max_distance: float,
    search: SearchParams | None = None,
    *,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, SearchReport]:
    """The neighbour graph of unit rows by the backend `search` picks for their number.

    Exact backends return every pair within max_distance; the IVF backend the pairs among each
    face's k nearest, with its measured recall in the report. Similarities come in the input's
    dtype where it is float64 (faiss computes in float32; the pairs are rescored).
    """
    params = search or SearchParams()
    n = unit.shape[0]
    backend = params.chosen(n)
    started = time.perf_counter()
    if backend == neighbours.BACKEND_IVF:
        (ei, ej, es), report = neighbours.ivf_knn_edges(
            unit, max_distance, params, progress=progress
        )
    else:
        if backend == neighbours.BACKEND_FLAT:
            ei, ej, es = neighbours.flat_range_edges(unit, max_distance, progress=progress)
        else:
            ei, ej, es = neighbour_edges(unit, max_distance, progress=progress)
        report = SearchReport(backend, n, pairs=int(ei.size))
        report.seconds = {"search": time.perf_counter() - started}
    if unit.dtype == np.float64 and es.dtype != np.float64:
        es = _pair_similarities(unit, ei, ej)
    return ei, ej, es, report


def _pair_similarities(unit: np.ndarray, ei: np.ndarray, ej: np.ndarray) -> np.ndarray:
    """Dot products of the row pairs (ei, ej) in the rows' dtype, in bounded chunks."""
    out = np.empty(ei.size, unit.dtype)
    step = PAIR_CHUNK
    for s in range(0, ei.size, step):
        a, b = np.take(unit, ei[s : s + step], 0), np.take(unit, ej[s : s + step], 0)
        out[s : s + step] = np.einsum("ij,ij->i", a, b)
    return out


# --- dense and sparse average linkage of one component ----------------------------------------


def _dense_average_linkage(x: np.ndarray, threshold: float) -> np.ndarray:
    """Local cluster ids of rows of `x`: scipy average linkage, merges below threshold."""
    from scipy.cluster.hierarchy import linkage as scipy_linkage  # here: 0.2 s at start-up
    from scipy.spatial.distance import pdist

    m = x.shape[0]
    dist = pdist(x.astype(np.float64, copy=False), metric="cosine")
    if m == 2:
        return np.array([0, 0]) if dist[0] < threshold else np.array([0, 1])
    z = scipy_linkage(dist, method="average")
    del dist
    merged = np.flatnonzero(z[:, 2] < threshold)
    if merged.size == 0:
        return np.arange(m)
    # Tree nodes 0..2m-2; each applied merge joins its two children to node m + row.
    child = z[merged, :2].astype(np.int64).ravel()
    node = np.repeat(merged + m, 2)
    graph = coo_matrix((np.ones(child.size, np.int8), (child, node)), shape=(2 * m - 1,) * 2)
    _, comp = connected_components(graph, directed=False)
    return comp[:m]


def _pairs_joined(x: np.ndarray, a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """Whether faces a[i] and b[i] (rows of x) are one cluster: their cosine distance is below
    threshold, decided as `_dense_average_linkage` decides it for two faces (scipy's own
    distance where the products land within 1e-9 of the threshold)."""
    from scipy.spatial.distance import pdist

    out = np.empty(a.size, bool)
    for s in range(0, a.size, PAIR_CHUNK):
        xa = np.take(x, a[s : s + PAIR_CHUNK], 0).astype(np.float64)
        xb = np.take(x, b[s : s + PAIR_CHUNK], 0).astype(np.float64)
        dots = np.einsum("ij,ij->i", xa, xb)
        dist = 1.0 - dots / (np.linalg.norm(xa, axis=1) * np.linalg.norm(xb, axis=1))
        for i in np.flatnonzero(np.abs(dist - threshold) < 1e-9):
            dist[i] = pdist(np.stack([xa[i], xb[i]]), metric="cosine")[0]
        out[s : s + PAIR_CHUNK] = dist < threshold
    return out


def _pair_distances(
    sums: np.ndarray, sizes: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """Exact average cosine distances of cluster pairs from their sum vectors.

    Gathering the sum vectors is bound by memory latency, so many pairs are split over the
    usable cores (numpy releases the GIL in the gathers and products).
    """
    out = np.empty(a.size, np.float64)

    def part(lo: int, hi: int) -> None:
        for s in range(lo, hi, PAIR_CHUNK):
            aa, bb = a[s : min(hi, s + PAIR_CHUNK)], b[s : min(hi, s + PAIR_CHUNK)]
            dots = np.einsum("ij,ij->i", np.take(sums, aa, 0), np.take(sums, bb, 0))
            out[s : s + aa.size] = 1.0 - dots / (sizes[aa] * sizes[bb])

    workers = min(settings.usable_cores(), a.size // (4 * PAIR_CHUNK))
    if workers < 2:
        part(0, a.size)
        return out
    bounds = np.linspace(0, a.size, workers + 1).astype(np.int64)
    with ThreadPoolExecutor(workers, thread_name_prefix="rescore") as pool:
        for done in [pool.submit(part, int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]:
            done.result()
    return out


def _candidates(
    u: np.ndarray,
    v: np.ndarray,
    dist: np.ndarray,
    unknown: np.ndarray,
    sizes: np.ndarray,
    loose: np.ndarray,
    m: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the pairs that may be the nearest of their u end and of their v end.

    `dist` is exact where `unknown` is 0 and a lower bound at the `loose` pairs, whose
    upper bound is 2 unknown / (|u| |v|) above it; bounds are widened by BOUND_SLACK.
    """
    high = dist.copy()
    lu, lv = u[loose], v[loose]
    high[loose] += 2.0 * unknown[loose] / (sizes[lu] * sizes[lv]) + BOUND_SLACK
    cap = np.full(m, np.inf)
    np.minimum.at(cap, u, high)
    np.minimum.at(cap, v, high)
    del high
    cand_u = dist <= cap[u]
    cand_v = dist <= cap[v]
    low = dist[loose] - BOUND_SLACK
    cand_u[loose] = low <= cap[lu]
    cand_v[loose] = low <= cap[lv]
    return cand_u, cand_v


def _compact(
    u: np.ndarray,
    v: np.ndarray,
    bu: np.ndarray,
    bv: np.ndarray,
    gid: np.ndarray,
    size: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Renumber the clusters that still have a pair to 0..k-1, in their order.

    Cannot-link pairs with a cluster that has no pair left can never be met again and are
    dropped. Returns (u, v, bu, bv, gid, size) in the new ids.
    """
    live = np.zeros(size.size, bool)
    live[u] = True
    live[v] = True
    new = np.cumsum(live, dtype=np.int64) - 1
    keep = live[bu] & live[bv]
    return (
        new[u].astype(np.int32),
        new[v].astype(np.int32),
        new[bu[keep]],
        new[bv[keep]],
        gid[live],
        size[live],
    )


def _sparse_average_linkage(
    unit: np.ndarray,
    rows: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    dist: np.ndarray,
    threshold: float,
    *,
    cannot: Pairs | None = None,
    on_round: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Exact average linkage over a sparse graph: (local cluster ids of `unit[rows]`, merges
    the cannot-link pairs prevented).

    `u`, `v`, `dist`: the pairs (local ids, u < v) with distance below or near threshold.
    Rounds of reciprocal-nearest-neighbour merges: average linkage is reducible (merging A
    and B never brings their union closer to C than the nearer of A and B), so every pair of
    mutual nearest clusters is a merge of the exact dendrogram and all of them can be merged
    at once; a cluster pair at distance >= threshold can never come below it again through
    later merges of either, so only pairs below threshold are kept; a cluster left with no
    such pair is final. Distances of new clusters are exact: summed similarities of the old
    pairs (Lance-Williams), or from sum vectors where an old pair is not in the graph.
    `cannot` (local ids): pairs of rows never in one cluster; a cluster pair holding one is
    dropped whenever it comes below threshold (counted once per pair of cluster ids).
    `on_round(fraction)` reports the share of the graph's pairs resolved so far.
    """
    m = rows.size
    sums = np.empty((m, unit.shape[1]), np.float64)  # per cluster: the sum of its unit rows
    step = PAIR_CHUNK  # rows gathered at a time: cache-sized
    for s in range(0, m, step):
        block = np.take(unit, rows[s : s + step], 0).astype(np.float64)
        sums[s : s + step] = block / np.linalg.norm(block, axis=1, keepdims=True)
    sizes = np.ones(m, np.float64)
    return _linkage_of_clusters(
        sums, sizes, u, v, dist, threshold, cannot=cannot, on_round=on_round
    )


def _linkage_of_clusters(
    sums: np.ndarray,
    sizes: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    dist: np.ndarray,
    threshold: float,
    *,
    cannot: Pairs | None = None,
    on_round: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, int]:
    """`_sparse_average_linkage` from clusters given by their sum vectors and sizes (both
    updated in place): (root cluster of each, merges the cannot-link pairs prevented).

    `dist` holds the exact average distances of the pairs (u, v), u < v. Tasks that
    `_takes_chain` are linked by the nearest-neighbour chain (`_chain_linkage`), smaller ones
    by the rounds below: both give the greedy merges.
    """
    if _takes_chain(dist, threshold):
        return _chain_linkage(sums, sizes, u, v, dist, threshold, cannot, on_round)
    total = sizes.size
    parent = np.arange(total)
    # The rounds work on ids 0..m-1 of the clusters that still have pairs: `gid` maps them to
    # the caller's ids (of `sums`, `sizes` and `parent`). The clusters left without a pair are
    # final, so the ids are renumbered (`compact`) as their number falls; the renumbering keeps
    # the ids' order, so every tie is broken as with the caller's ids.
    gid = np.arange(total)
    m = total
    size = sizes.copy()  # per round id
    u = u.astype(np.int32, copy=False)  # ids fit: a component has fewer than 2**31 faces
    v = v.astype(np.int32, copy=False)
    dist = dist.astype(np.float64, copy=False)
    keep = dist < threshold
    u, v, dist = u[keep], v[keep], dist[keep]
    bu, bv = cannot if cannot is not None else _empty_pairs()
    blocked = np.unique(_pair_keys(bu, bv, m))
    prevented: list[np.ndarray] = []

    def allowed(pu: np.ndarray, pv: np.ndarray) -> np.ndarray:
        """Mask of the candidate pairs that hold no cannot-link pair (the rest are counted)."""
        if blocked.size == 0:
            return np.ones(pu.size, bool)
        hit = np.isin(_pair_keys(pu, pv, m), blocked)
        prevented.append(_pair_keys(gid[pu[hit]], gid[pv[hit]], total))  # caller's ids
        return ~hit

    def distances(pu: np.ndarray, pv: np.ndarray) -> np.ndarray:
        return _pair_distances(sums, sizes, gid[pu], gid[pv])

    ok = allowed(u, v)
    u, v, dist = u[ok], v[ok], dist[ok]
    # Face pairs of each cluster pair whose similarity is not in its sum yet (0: `dist` is the
    # exact distance; else `dist` is its lower bound, every unknown similarity taken as 1).
    unknown = np.zeros(u.size)
    initial = max(1, u.size)
    rounds = 0
    rescored = 0
    unset = np.iinfo(np.int64).max
    while u.size:
        rounds += 1
        # Nearest neighbours under bounds: a cluster's nearest distance is at most its cap,
        # the smallest upper bound (or exact distance) of its pairs, and its candidates are
        # the pairs whose lower bound is not past the cap. A single candidate is the nearest
        # whatever its exact distance; where there are several, the bounded ones are summed
        # from the sum vectors and the nearest is the exact minimum, ties to the smallest id.
        # The globally closest pair (ties to the smallest ids) is then always mutual, so
        # every round merges.
        loose = np.flatnonzero(unknown > 0)
        cand_u, cand_v = _candidates(u, v, dist, unknown, size, loose, m)
        if loose.size:
            count = np.bincount(u[cand_u], minlength=m) + np.bincount(v[cand_v], minlength=m)
            lu, lv = u[loose], v[loose]
            need = (cand_u[loose] & (count[lu] > 1)) | (cand_v[loose] & (count[lv] > 1))
            loose, lu, lv = loose[need], lu[need], lv[need]
            del count, need
            if loose.size:
                dist[loose] = distances(lu, lv)
                unknown[loose] = 0
                rescored += loose.size
                del cand_u, cand_v
                cand_u, cand_v = _candidates(
                    u, v, dist, unknown, size, np.flatnonzero(unknown > 0), m
                )
            del lu, lv
        del loose
        best = np.full(m, np.inf)
        np.minimum.at(best, u[cand_u], dist[cand_u])
        np.minimum.at(best, v[cand_v], dist[cand_v])
        nearest = np.full(m, unset)
        tie = cand_u & (dist == best[u])
        np.minimum.at(nearest, u[tie], v[tie])
        tie = cand_v & (dist == best[v])
        np.minimum.at(nearest, v[tie], u[tie])
        del tie, cand_u, cand_v
        a = np.flatnonzero(nearest != unset)
        b = nearest[a]
        mutual = (nearest[b] == a) & (a < b)
        a, b = a[mutual], b[mutual]
        rep = np.arange(m, dtype=np.int32)
        rep[b] = a
        moved = np.zeros(m, bool)  # clusters merged this round (a pair's other ends keep ids)
        moved[a] = True
        moved[b] = True
        touched = moved[u] | moved[v]
        tix = np.flatnonzero(touched)
        # A merged pair's summed similarity is the sum over its old pairs (Lance-Williams);
        # face pairs of an old pair absent from the graph (or not summed yet) stay unknown.
        tu, tv = u[tix], v[tix]
        area = size[tu] * size[tv]
        tmiss = unknown[tix]
        tsim = area * (1.0 - dist[tix]) - tmiss  # the known part of the similarity sum
        tcover = area - tmiss  # face pairs summed (exact integers in float64)
        tu, tv = rep[tu], rep[tv]
        del tix, area, tmiss, moved
        np.logical_not(touched, out=touched)
        u, v, dist = u[touched], v[touched], dist[touched]  # pairs of unchanged clusters
        unknown = unknown[touched]
        del touched
        inner = tu != tv  # drops the merged pair itself
        tsim, tcover, tu, tv = tsim[inner], tcover[inner], tu[inner], tv[inner]
        key = np.minimum(tu, tv).astype(np.int64) * m + np.maximum(tu, tv)
        del tu, tv, inner
        order = np.argsort(key)
        key = key[order]
        first = np.flatnonzero(np.diff(key, prepend=-1))
        sim = np.add.reduceat(tsim[order], first) if key.size else np.zeros(0)
        cover = np.add.reduceat(tcover[order], first) if key.size else np.zeros(0)
        tu, tv = (key[first] // m).astype(np.int32), (key[first] % m).astype(np.int32)
        del key, order, tsim, tcover, first
        size[a] += size[b]
        ga, gb = gid[a], gid[b]
        sizes[ga] += sizes[gb]
        sums[ga] += sums[gb]
        parent[gb] = ga
        del ga, gb
        full = size[tu] * size[tv]
        tmiss = full - cover
        del cover
        td = 1.0 - (sim + tmiss) / full  # exact where nothing is missing, else a lower bound
        # Decide against the threshold as the exact distance would: a bound at or past it
        # drops the pair, an upper bound below it keeps it; only pairs in between are summed
        # from the sum vectors now.
        unsure = np.flatnonzero((tmiss > 0) & (td - BOUND_SLACK < threshold))
        upper = 1.0 - (sim[unsure] - tmiss[unsure]) / full[unsure]
        unsure = unsure[upper + BOUND_SLACK >= threshold]
        del upper
        td[unsure] = distances(tu[unsure], tv[unsure])
        tmiss[unsure] = 0
        rescored += unsure.size
        del sim, full, unsure
        if blocked.size:  # cluster pairs that share a photo: relabel, then keep out
            bu, bv = rep[bu], rep[bv]
            blocked = np.unique(_pair_keys(bu, bv, m))
            near = td < threshold
            near[near] = allowed(tu[near], tv[near])
        else:
            near = td < threshold
        u = np.concatenate([u, tu[near]])
        v = np.concatenate([v, tv[near]])
        dist = np.concatenate([dist, td[near]])
        unknown = np.concatenate([unknown, tmiss[near]])
        if on_round is not None:
            on_round(1.0 - u.size / initial)
        # Clusters with a pair after this round: at most those that had one, less the merged.
        if m > COMPACT_MIN and 2 * (np.count_nonzero(best < np.inf) - a.size) < m:
            u, v, bu, bv, gid, size = _compact(u, v, bu, bv, gid, size)
            m = size.size
            blocked = np.unique(_pair_keys(bu, bv, m))
    n_prevented = int(np.unique(np.concatenate(prevented)).size) if prevented else 0
    log.debug(
        "sparse linkage done", faces=total, rounds=rounds, rescored=rescored, prevented=n_prevented
    )
    return _roots(parent), n_prevented


def _takes_chain(dist: np.ndarray, threshold: float) -> bool:
    """Whether a task with these pair distances is linked by the nearest-neighbour chain: from
    `linkage.chain_min_pairs` pairs below the threshold (settings)."""
    least = settings.clustering().linkage.chain_min_pairs
    return int(np.count_nonzero(np.asarray(dist) < threshold)) >= least


def _chain_linkage(
    sums: np.ndarray,
    sizes: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    dist: np.ndarray,
    threshold: float,
    cannot: Pairs | None,
    on_round: Callable[[float], None] | None,
) -> tuple[np.ndarray, int]:
    """`_linkage_of_clusters` by the nearest-neighbour chain (`chain.chain_linkage`, compiled):
    a merge does work only on the merged clusters' pairs, where each of the rounds goes over
    all remaining pairs, and a component whose clusters merge one at a time (a large identity
    taking in its faces) takes thousands of rounds."""
    from facesets.clustering import chain  # numba: about 1 s to import, so only when needed

    keep = np.asarray(dist) < threshold
    u = np.asarray(u)[keep].astype(np.int32, copy=False)
    v = np.asarray(v)[keep].astype(np.int32, copy=False)
    area = sizes[u] * sizes[v]
    clusters = max(1, sizes.size - 1)
    merged = 0

    def on_merges(count: int) -> None:
        nonlocal merged
        merged += count
        if on_round is not None:
            on_round(min(1.0, merged / clusters))

    parent, keys = chain.chain_linkage(
        sums,
        sizes,
        u,
        v,
        area * (1.0 - np.asarray(dist, np.float64)[keep]),
        area,
        threshold,
        cannot if cannot is not None else _empty_pairs(),
        BOUND_SLACK,
        on_merges=on_merges,
    )
    log.debug("chain linkage done", clusters=sizes.size, merges=merged, prevented=keys.size)
    return _roots(parent), int(keys.size)


# --- the clustering ------------------------------------------------------------------------


def cluster_average_linkage(
    emb: np.ndarray,
    threshold: float,
    *,
    dense_max: int = defaults.DENSE_COMPONENT_MAX,
    search: SearchParams | None = None,
    progress: Progress | None = None,
    photo: np.ndarray | None = None,
    cannot: Pairs | None = None,
) -> ClusterResult:
    """Average-linkage clusters at cosine distance `threshold` (merge while below it).

    `photo` (one value per face; faces with one value come from one photo) and `cannot` (row
    pairs) name faces that never end in one cluster: a merge that would join them is skipped
    and the next best merges go on; the result's `prevented` counts the skipped merges.

    Components of the neighbour graph of up to `dense_max` faces are clustered with scipy's
    dense linkage; larger ones with the exact sparse method, in rounds or, for large tasks,
    by the nearest-neighbour chain (`METHOD_CHAIN` in `components`). The graph comes from
    `search_graph` (exact below `search.ann_min_faces`, an IVF index above; its report, with
    the recall, is the result's `search`). `progress(done, total)` is called as the neighbour
    search proceeds and as components are clustered.
    """
    t = _check_threshold(threshold)
    if dense_max < 2:
        raise ValueError(f"dense_max must be at least 2, got {dense_max}")
    x = _check_embeddings(emb)
    n = x.shape[0]
    if n == 0:
        return ClusterResult(np.zeros(0, np.int64), [], 0, 0)
    unit = _as_unit_rows(x)
    cu, cv = cannot_link_pairs(photo, n)
    if cannot is not None:
        eu, ev = _check_pairs(cannot, n)
        cu, cv = _check_pairs((np.concatenate([cu, eu]), np.concatenate([cv, ev])), n)
    search_blocks = 100  # the search reports in hundredths, then the second stage
    total = search_blocks + 100

    def search_progress(done: int, blocks: int) -> None:
        if progress is not None:
            progress(done * search_blocks // max(1, blocks), total)

    started = time.perf_counter()
    ei, ej, es, report = search_graph(unit, t + EDGE_MARGIN, search, progress=search_progress)
    searched = time.perf_counter()
    n_edges = int(ei.size)
    graph = coo_matrix((np.ones(n_edges, np.int8), (ei, ej)), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    del graph
    comp_sizes = np.bincount(comp, minlength=n_comp)

    raw = np.arange(n, dtype=np.int64)  # cluster id = a member's face index
    chain_faces = np.zeros(n, bool)  # faces of the tasks the nearest-neighbour chain linked
    members = np.argsort(comp, kind="stable")
    starts = np.concatenate([[0], np.cumsum(comp_sizes)])
    infos: list[ComponentInfo] = []
    multi = np.flatnonzero(comp_sizes > 1)
    every_cannot = (cu, cv)  # the completion below may join components
    inside = comp[cu] == comp[cv]  # pairs in different components never meet
    cu, cv = cu[inside], cv[inside]
    # Components holding a cannot-link pair take the sparse method, which honours it.
    constrained = np.zeros(n_comp, bool)
    constrained[comp[cu]] = True
    sparse = (comp_sizes[multi] > dense_max) | constrained[multi]
    big = multi[sparse]
    small = multi[~sparse]
    prevented = 0
    stage_faces = max(1, int(comp_sizes[multi].sum()))
    reported = 0

    def stage_progress(done: float) -> None:
        nonlocal reported
        pct = int(done * 99 // stage_faces)
        if progress is not None and pct > reported:
            reported = pct
            progress(search_blocks + pct, total)

    reporting = threading.Lock()  # the linkage threads and this one report progress
    faces_done = 0  # the small components' faces
    shares: list[float] = []  # each large task's faces done so far

    def report_done() -> None:
        with reporting:
            stage_progress(faces_done + sum(shares))

    linked: list[Future[tuple[np.ndarray, int]]] = []
    chained: list[bool] = []  # per task: linked by the nearest-neighbour chain
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Pairs]] = []
    pool: ThreadPoolExecutor | None = None
    if big.size:
        # The large components in tasks, largest first, on a pool of threads: the rounds are
        # numpy work on large arrays, which releases the GIL, and components never merge, so
        # a task's labels are those of one linkage over all (its local ids keep the faces'
        # order, so ties break alike). A component's cost per pair varies sevenfold (the
        # rounds it needs), so threads take the next task as they come free rather than split
        # the pairs in advance. Small components are clustered on this thread meanwhile.
        threads = max(1, min(settings.usable_cores(), LINKAGE_THREADS_MAX))
        parts = _linkage_tasks(big, comp, ei, ej, es, cu, cv, threads)
        del ei, ej, es  # the graph's other pairs are done with
        chained = [_takes_chain(part[3], t) for part in parts]
        shares.extend([0.0] * len(parts))

        def link(i: int) -> tuple[np.ndarray, int]:
            idx, bu, bv, bd, local_cannot = parts[i]

            def on_round(part: float) -> None:
                shares[i] = part * idx.size
                report_done()

            return _sparse_average_linkage(
                unit, idx, bu, bv, bd, t, cannot=local_cannot, on_round=on_round
            )

        pool = ThreadPoolExecutor(min(threads, len(parts)), thread_name_prefix="linkage")
        linked = [pool.submit(link, i) for i in range(len(parts))]

    try:
        # Two-face components, most of the small ones, in one go: no per-component call.
        two = small[comp_sizes[small] == 2]
        if two.size:
            first, second = members[starts[two]], members[starts[two] + 1]
            join = _pairs_joined(x, first, second, t)
            raw[second[join]] = first[join]
            infos.extend(
                ComponentInfo(int(f), 2, 1 if j else 2, METHOD_DENSE)
                for f, j in zip(first, join, strict=True)
            )
            faces_done += 2 * two.size
            report_done()
        for c in small[comp_sizes[small] > 2]:
            idx = members[starts[c] : starts[c + 1]]
            local = _dense_average_linkage(x[idx], t)
            raw[idx] = idx[_first_member_ids(local)]
            infos.append(ComponentInfo(int(idx[0]), idx.size, int(local.max()) + 1, METHOD_DENSE))
            faces_done += idx.size
            report_done()
        for (idx, *_), future, by_chain in zip(parts, linked, chained, strict=True):
            roots, skipped = future.result()
            raw[idx] = idx[roots]
            prevented += skipped
            if by_chain:
                chain_faces[idx] = True
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    parts.clear()  # their pairs are done with
    linked.clear()
    for c in big:
        cidx = members[starts[c] : starts[c + 1]]
        k = int(np.unique(raw[cidx]).size)
        method = METHOD_CHAIN if chain_faces[cidx[0]] else METHOD_SPARSE
        infos.append(ComponentInfo(int(cidx[0]), int(cidx.size), k, method))

    if report.truncated is not None and report.truncated.any():
        merged, skipped = _complete_truncated(unit, raw, report.truncated, t, cannot=every_cannot)
        report.completed = merged
        prevented += skipped
    for c in np.flatnonzero(comp_sizes == 1):
        infos.append(ComponentInfo(int(members[starts[c]]), 1, 1, METHOD_SINGLETON))
    infos.sort(key=lambda info: (-info.size, info.first))
    labels, sizes = canonical_labels(raw)
    if progress is not None:
        progress(total, total)
    finished = time.perf_counter()
    seconds = {"search": searched - started, "linkage": finished - searched}
    result = ClusterResult(
        labels, infos, int(sizes.size), n_edges, sizes, seconds, report, prevented
    )
    log.info(
        "clustered",
        prevented=prevented,
        faces=n,
        search=report.backend,
        recall=report.recall,
        clusters=result.n_clusters,
        edges=n_edges,
        components=n_comp,
        largest_component=result.largest_component,
        methods=result.method_counts(),
        search_s=round(seconds["search"], 2),
        linkage_s=round(seconds["linkage"], 2),
    )
    return result


def _linkage_tasks(
    big: np.ndarray,
    comp: np.ndarray,
    ei: np.ndarray,
    ej: np.ndarray,
    es: np.ndarray,
    cu: np.ndarray,
    cv: np.ndarray,
    threads: int,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Pairs]]:
    """The large components `big` as linkage tasks for `threads` threads, most pairs first:
    (faces, pairs in local ids u and v, their distances, cannot-link pairs in local ids). The
    components go, most pairs first, to the task with the fewest pairs so far, out of
    threads x BUNDLES_PER_THREAD tasks (a component larger than a share stays alone). Local ids
    and pairs keep the order of the faces and of the graph."""
    n_comp = comp.max() + 1 if comp.size else 0
    pairs = np.bincount(comp[ei], minlength=n_comp)
    count = max(1, min(big.size, round(threads * BUNDLES_PER_THREAD)))
    loads = np.zeros(count)
    task_of = np.full(n_comp, -1, np.int64)
    for c in big[np.argsort(-pairs[big], kind="stable")]:
        task = int(np.argmin(loads))
        task_of[c] = task
        loads[task] += pairs[c]
    # No task is empty: count <= the components, and each has pairs. Renumber by load.
    rank = np.empty(count, np.int64)
    rank[np.argsort(-loads, kind="stable")] = np.arange(count)
    task_of[big] = rank[task_of[big]]

    def grouped(task: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions with a task, grouped by task (ascending within one), and the bounds."""
        at = np.flatnonzero(task >= 0)
        at = at[np.argsort(task[at], kind="stable")]
        return at, np.searchsorted(task[at], np.arange(count + 1))

    faces, face_bounds = grouped(task_of[comp])
    local_of = np.full(comp.size, -1, np.int32)
    for i in range(count):
        span = faces[face_bounds[i] : face_bounds[i + 1]]
        local_of[span] = np.arange(span.size, dtype=np.int32)
    edges, edge_bounds = grouped(task_of[comp[ei]])  # both ends of a pair share its component
    blocked, blocked_bounds = grouped(task_of[comp[cu]])
    tasks = []
    for i in range(count):
        e = edges[edge_bounds[i] : edge_bounds[i + 1]]
        b = blocked[blocked_bounds[i] : blocked_bounds[i + 1]]
        tasks.append(
            (
                faces[face_bounds[i] : face_bounds[i + 1]],
                local_of[ei[e]],
                local_of[ej[e]],
                1.0 - es[e].astype(np.float64),
                (local_of[cu[b]], local_of[cv[b]]),
            )
        )
    return tasks


def _complete_truncated(
    unit: np.ndarray, raw: np.ndarray, truncated: np.ndarray, threshold: float, *, cannot: Pairs
) -> tuple[int, int]:
    """Go on merging clusters that hold truncated faces (their k nearest all lie within the
    threshold, so the graph may lack their other pairs) while two are below the threshold:
    (merges made, merges the cannot-link pairs prevented). `raw` is updated in place.

    Two clusters whose average distance is below the threshold have a face pair below it;
    where one of the two faces' lists is not truncated, the graph holds the pair (up to the
    search's recall) and the linkage has decided the clusters. So only pairs of clusters that
    both hold a truncated face may be missing, and all of those are computed here from sum
    vectors: a store's few large identities are where they sit (a large identity's blurred
    faces find each other first and would form a cluster of their own). Merging two clusters
    never brings their union below the threshold to a third that neither was below
    (reducibility), so the clusters' other pairs stay decided.
    """
    groups = np.unique(raw[truncated])
    if groups.size < 2:
        return 0, 0
    faces = np.flatnonzero(np.isin(raw, groups))
    slot = np.searchsorted(groups, raw[faces])
    order = np.argsort(slot, kind="stable")
    faces, slot = faces[order], slot[order]
    del order
    g, d = groups.size, unit.shape[1]
    sums = np.zeros((g, d), np.float64)
    for s in range(0, faces.size, ROWS_AT_ONCE):
        block = np.take(unit, faces[s : s + ROWS_AT_ONCE], 0).astype(np.float64)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        part = slot[s : s + ROWS_AT_ONCE]
        first = np.flatnonzero(np.diff(part, prepend=-1))
        sums[part[first]] += np.add.reduceat(block, first)
    sizes = np.bincount(slot, minlength=g).astype(np.float64)
    # Candidates by float32 products of the mean vectors (average similarity = mean . mean),
    # a margin past the threshold; then each pair's exact distance from the sums.
    means = (sums / sizes[:, None]).astype(np.float32)
    min_sim = np.float32(1.0 - threshold - EDGE_MARGIN)
    found_a: list[np.ndarray] = []
    found_b: list[np.ndarray] = []
    for r0 in range(0, g, ROW_BLOCK):
        for c0 in range(r0, g, COL_BLOCK):
            sims = means[r0 : r0 + ROW_BLOCK] @ means[c0 : c0 + COL_BLOCK].T
            ii, jj = np.nonzero(sims >= min_sim)
            keep = jj + c0 > ii + r0
            found_a.append(ii[keep] + r0)
            found_b.append(jj[keep] + c0)
    del means
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    dist = _pair_distances(sums, sizes, a, b)
    near = dist < threshold
    if not near.any():
        return 0, 0
    a, b, dist = a[near], b[near], dist[near]
    at = np.full(raw.size, -1, np.int64)  # slot of each face in a completed cluster
    at[faces] = slot
    cu, cv = cannot
    both = (at[cu] >= 0) & (at[cv] >= 0)
    roots, prevented = _linkage_of_clusters(
        sums, sizes, a, b, dist, threshold, cannot=(at[cu[both]], at[cv[both]])
    )
    raw[faces] = groups[roots[slot]]
    merged = int(g - np.unique(roots).size)
    log.info("completion of truncated clusters", clusters=g, pairs=int(a.size), merged=merged)
    return merged, prevented


def _first_member_ids(local: np.ndarray) -> np.ndarray:
    """For local cluster ids, the position of each row's cluster's first row."""
    _, first, inverse = np.unique(local, return_index=True, return_inverse=True)
    return first[inverse]


# --- helpers of refine, consolidate and extend ----------------------------------------------

ROWS_AT_ONCE = 4096  # faces compared with all centroids at a time


def _centroid_matrix(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster ids >= 0 present, their unit mean vectors as a float32 matrix)."""
    x = _check_embeddings(emb)
    lab = np.asarray(labels)
    if lab.shape != (x.shape[0],):
        raise ValueError(f"labels must be one per face: {lab.shape} for {x.shape[0]} faces")
    valid = np.flatnonzero(lab >= 0)
    ids, inverse = np.unique(lab[valid], return_inverse=True)
    means = np.zeros((ids.size, x.shape[1]), np.float64)
    for s in range(0, valid.size, ROWS_AT_ONCE):
        rows = valid[s : s + ROWS_AT_ONCE]
        np.add.at(means, inverse[s : s + ROWS_AT_ONCE], _unit_rows(x[rows]))
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # opposite faces cancelling out exactly: leave a zero vector
    return ids.astype(np.int64), (means / norms).astype(np.float32)


def centroids(emb: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Unit mean embedding of each cluster (labels < 0 are ignored)."""
    ids, mat = _centroid_matrix(emb, labels)
    return {int(k): mat[i] for i, k in enumerate(ids)}


@dataclass(frozen=True)
class MergeResult:
    labels: np.ndarray  # renumbered by size as `canonical_labels` does; -1 stays -1
    prevented: int  # cluster merges skipped because the two clusters shared a photo
    n_before: int  # clusters before the merge


def merge_centroids(
    emb: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    *,
    photo: np.ndarray | None = None,
    cannot: Pairs | None = None,
) -> MergeResult:
    """Merge over-split clusters: average linkage of cluster centroids at `threshold`.

    With `photo` (one value per face), two clusters holding faces of one photo never merge,
    nor do clusters that would come to hold two such faces through a chain of merges; `cannot`
    (face row pairs) keeps the clusters of each pair's faces apart the same way.
    """
    t = _check_threshold(threshold)
    lab = np.asarray(labels)
    ids, mat = _centroid_matrix(emb, lab)
    out = np.full(lab.shape[0], -1, np.int64)
    if ids.size == 0:
        return MergeResult(out, 0, 0)
    clusters: Pairs | None = None
    if photo is not None or cannot is not None:
        fu, fv = cannot_link_pairs(photo, lab.shape[0])
        if cannot is not None:
            eu, ev = _check_pairs(cannot, lab.shape[0])
            fu, fv = np.concatenate([fu, eu]), np.concatenate([fv, ev])
        both = (lab[fu] >= 0) & (lab[fv] >= 0)
        fu, fv = fu[both], fv[both]
        clusters = (np.searchsorted(ids, lab[fu]), np.searchsorted(ids, lab[fv]))
    groups = cluster_average_linkage(mat, t, cannot=clusters)
    valid = lab >= 0
    out[valid] = groups.labels[np.searchsorted(ids, lab[valid])]
    return MergeResult(canonical_labels(out)[0], groups.prevented, int(ids.size))


def merge_by_centroid(
    emb: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    *,
    photo: np.ndarray | None = None,
) -> np.ndarray:
    """`merge_centroids`' labels: new labels (renumbered by size); -1 stays -1."""
    return merge_centroids(emb, labels, threshold, photo=photo).labels


def reject_outliers(
    emb: np.ndarray, labels: np.ndarray, threshold: float, min_size: int
) -> np.ndarray:
    """Labels with faces farther than `threshold` from their cluster's centroid set to -1.

    Only clusters of at least `min_size` faces are checked (a small cluster's centroid is
    too much its own members' to judge them). Other labels are kept as they are.
    """
    t = _check_threshold(threshold)
    x = _check_embeddings(emb)
    lab = np.asarray(labels)
    ids, mat = _centroid_matrix(x, lab)
    out = lab.astype(np.int64, copy=True)
    if ids.size == 0:
        return out
    valid = np.flatnonzero(lab >= 0)
    slot = np.searchsorted(ids, lab[valid])
    sizes = np.bincount(slot, minlength=ids.size)
    checked = valid[sizes[slot] >= min_size]
    slot = slot[sizes[slot] >= min_size]
    for s in range(0, checked.size, ROWS_AT_ONCE):
        rows = checked[s : s + ROWS_AT_ONCE]
        dist = 1.0 - np.einsum("ij,ij->i", _unit_rows(x[rows]), mat[slot[s : s + ROWS_AT_ONCE]])
        out[rows[dist > t]] = -1
    return out


def complete_linkage_groups(centroids: np.ndarray, min_similarity: float) -> list[list[int]]:
    """Groups (of two or more rows) in which every pair has cosine similarity >= the minimum.

    Complete linkage, so a chain of pairwise-similar sets never joins two distinct people.
    Each group is sorted; groups are ordered by their first row.
    """
    from scipy.cluster.hierarchy import linkage as scipy_linkage  # here: 0.2 s at start-up
    from scipy.spatial.distance import pdist

    x = _check_embeddings(centroids)
    if not -1.0 <= float(min_similarity) < 1.0:
        raise ValueError(f"min_similarity must be in [-1, 1), got {min_similarity}")
    max_dist = 1.0 - float(min_similarity)
    n = x.shape[0]
    if n < 2:
        return []
    ei, ej, _ = neighbour_edges(_unit_rows(x, x.dtype.type), max_dist + EDGE_MARGIN)
    graph = coo_matrix((np.ones(ei.size, np.int8), (ei, ej)), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    groups: list[list[int]] = []
    order = np.argsort(comp, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(comp, minlength=n_comp))])
    for c in range(n_comp):
        idx = order[bounds[c] : bounds[c + 1]]
        if idx.size < 2:
            continue
        dist = pdist(x[idx].astype(np.float64), metric="cosine")
        z = scipy_linkage(dist, method="complete")
        merged = np.flatnonzero(z[:, 2] <= max_dist)
        m = idx.size
        child = z[merged, :2].astype(np.int64).ravel()
        node = np.repeat(merged + m, 2)
        tree = coo_matrix((np.ones(child.size, np.int8), (child, node)), shape=(2 * m - 1,) * 2)
        local = connected_components(tree, directed=False)[1][:m]
        for k in np.unique(local):
            members = idx[local == k]
            if members.size > 1:
                groups.append(sorted(int(i) for i in members))
    groups.sort(key=lambda g: g[0])
    return groups


@dataclass(frozen=True)
class Assignment:
    rows: np.ndarray  # int64 per face: the centroid row it joins, or -1
    distances: np.ndarray  # float32 per face: cosine distance to the nearest allowed centroid
    prevented: int  # faces kept from their nearest centroid within threshold by the constraint


def nearest_centroid(
    emb: np.ndarray,
    centroids: np.ndarray,
    threshold: float,
    search: SearchParams | None = None,
    *,
    photo: np.ndarray | None = None,
    held: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each face, the row of its nearest centroid, or -1 when farther than `threshold`.

    Returns (rows int64, cosine distances to the nearest centroid as float32; inf without
    centroids). `search` picks the way by the number of centroids: the blocked exact products
    ("exact", memory ROWS_AT_ONCE x centroids), a flat faiss index (exact) or an IVF index
    over the centroids at or above `search.ann_min_faces` of them. `photo` and `held`: see
    `assign_nearest`.
    """
    found = assign_nearest(emb, centroids, threshold, search, photo=photo, held=held)
    return found.rows, found.distances


def assign_nearest(
    emb: np.ndarray,
    centroids: np.ndarray,
    threshold: float,
    search: SearchParams | None = None,
    *,
    photo: np.ndarray | None = None,
    held: tuple[np.ndarray, np.ndarray] | None = None,
) -> Assignment:
    """Nearest-centroid assignment under the cannot-link constraint.

    `photo`: one value per face (faces with one value come from one photo); `held`: pairs
    (centroid row, photo value) of the photos each centroid's cluster already holds. A face
    never joins a centroid that holds its photo, and two faces of one photo never join one
    centroid: among them the closest face-centroid pairs are taken first, the others go to
    their next nearest allowed centroid within threshold, or to none.
    """
    t = _check_threshold(threshold)
    x = _check_embeddings(emb)
    c = _check_embeddings(centroids)
    n = x.shape[0]
    best = np.full(n, -1, np.int64)
    dist = np.full(n, np.inf, np.float32)
    if c.shape[0] == 0 or n == 0:
        return Assignment(best, dist, 0)
    if c.shape[1] != x.shape[1]:
        raise ValueError(f"dimension mismatch: faces {x.shape[1]}, centroids {c.shape[1]}")
    cu = _unit_rows(c, np.float32)
    params = search or SearchParams()
    backend = params.chosen(c.shape[0])
    if backend == neighbours.BACKEND_EXACT:
        for s in range(0, n, ROWS_AT_ONCE):
            sims = _unit_rows(x[s : s + ROWS_AT_ONCE], np.float32) @ cu.T
            arg = np.argmax(sims, axis=1)
            dist[s : s + ROWS_AT_ONCE] = 1.0 - sims[np.arange(arg.size), arg]
            best[s : s + ROWS_AT_ONCE] = arg
    else:
        rows, sims = neighbours.nearest_rows(_unit_rows(x, np.float32), cu, params, backend)
        found = rows >= 0  # an IVF probe may find no centroid at all
        best[found] = rows[found]
        dist[found] = 1.0 - sims[found]
    best[dist > t] = -1
    if photo is None:
        return Assignment(best, dist, 0)
    return _constrained_assignment(x, cu, t, best, dist, photo, held)


def _constrained_assignment(
    x: np.ndarray,
    cu: np.ndarray,
    t: float,
    best: np.ndarray,
    dist: np.ndarray,
    photo: np.ndarray,
    held: tuple[np.ndarray, np.ndarray] | None,
) -> Assignment:
    """Re-decide the faces whose photo a centroid holds or another face shares (see above)."""
    n, k = x.shape[0], cu.shape[0]
    values = np.asarray(photo)
    if values.shape != (n,):
        raise ValueError(f"photo must hold one value per face: {values.shape} for {n} faces")
    held_rows = np.zeros(0, np.int64) if held is None else np.asarray(held[0], np.int64)
    held_values = values[:0] if held is None else np.asarray(held[1])
    if held_rows.shape != held_values.shape or held_rows.ndim != 1:
        raise ValueError("held must be two arrays of one length: centroid rows, photo values")
    if held_rows.size and (held_rows.min() < 0 or held_rows.max() >= k):
        raise ValueError(f"held centroid rows must lie in [0, {k})")
    codes = photo_codes(np.concatenate([values, held_values]), n + held_values.size)
    face_code, held_code = codes[:n], codes[n:]
    risky_code = np.bincount(face_code, minlength=codes.max() + 1) > 1
    risky_code[held_code] = True
    risky = np.flatnonzero(risky_code[face_code])
    if risky.size == 0:
        return Assignment(best, dist, 0)
    rows_out, dist_out = best.copy(), dist.copy()
    held_order = np.argsort(held_code, kind="stable")
    held_sorted = held_code[held_order]
    risky = risky[np.argsort(face_code[risky], kind="stable")]
    bounds = np.flatnonzero(np.diff(face_code[risky], prepend=-1, append=-1))
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        faces = risky[s:e]
        code = face_code[faces[0]]
        lo, hi = np.searchsorted(held_sorted, [code, code + 1])
        sims = _unit_rows(x[faces], np.float32) @ cu.T
        sims[:, held_rows[held_order[lo:hi]]] = -np.inf  # centroids holding this photo
        dist_out[faces] = 1.0 - sims.max(axis=1)
        rows_out[faces] = -1
        for _ in range(faces.size):  # closest face-centroid pairs first
            f, col = np.unravel_index(int(np.argmax(sims)), sims.shape)
            if not 1.0 - sims[f, col] <= t:
                break
            rows_out[faces[f]] = col
            dist_out[faces[f]] = 1.0 - sims[f, col]
            sims[f, :] = -np.inf
            sims[:, col] = -np.inf
    prevented = int(np.count_nonzero((best >= 0) & (rows_out != best)))
    return Assignment(rows_out, dist_out, prevented)
