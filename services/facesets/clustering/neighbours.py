"""Neighbour search of clustering and extend through faiss: exact for small stores, IVF above.

Small stores (below the `neighbours.ann_min_faces` setting) search a flat inner-product index
(`IndexFlatIP`) by range: every pair within the distance, exactly as the blocked search in
`linkage.neighbour_edges` finds it (that stays the reference). Larger stores are grouped the way
an inverted-file index (`IndexIVFFlat`, inner product) groups them: `nlist` k-means centres,
each face in the list of its nearest centre, and each face finds its `k` nearest among the
`nprobe` lists nearest to it, of which those within the distance become pairs.

Clustering searches the store against itself, so that search runs list by list rather than
query by query (`_self_join_knn`): the faces probing a list times the list's members is one
float32 matrix product (BLAS, near the cores' peak rate), whose rows go into each face's
running top-k heap (faiss's `ResultHeap`). The candidates are exactly an IVFFlat search's with
the same lists and probes; IVFFlat itself compares one query with one stored face at a time,
bound by memory bandwidth (about 7x slower at a million faces). Extend's nearest-centroid
search (new faces against a store's centroids, not a self-join) still uses `IndexIVFFlat`.

A million-face store has about a billion pairs within the clustering threshold (large
identities), more than memory holds; the k nearest of each face, joined from both ends, keep
the graph connected where the full graph is, and average linkage computes each cluster pair's
distance exactly from sum vectors wherever a pair is missing.

A face whose `k` nearest all lie within the distance (its list is truncated: a large identity
spread over many lists) is searched again over `dense_nprobe` lists, and so is a face whose
list has room (`room_again`); the report keeps which
faces stay truncated, so that the linkage can complete the pairs of their clusters that the
graph lacks (`linkage._complete_truncated`).

A face whose list has room (fewer than `k` within the distance: a small identity, whose faces
scatter over lists as each sits nearest the centre its own noise points to) misses neighbours
in lists far from its own that no number of probes reaches cheaply; its identity's other faces
often found them, or found it. So its neighbours in the graph (from either end), their own
lists and itself are scored exactly and the best `k` within the distance become its list
(`_hop_pass`, `hop_rounds` times: a round starts from the lists the previous one improved).

The search's recall is measured on a random sample of queries: the share of each one's `k`
nearest faces within the distance (by exact brute force) that the search returned (list
recall), and the share the graph holds as pairs found from either end (graph recall).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import structlog
from scipy.sparse import csr_matrix

from facesets.common import settings

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]

BACKEND_AUTO = "auto"
BACKEND_EXACT = "exact"  # linkage.neighbour_edges: blocked numpy products, the reference
BACKEND_FLAT = "flat"  # faiss IndexFlatIP range search: exact
BACKEND_IVF = "ivf"  # IVF lists (faiss k-means) searched k-nearest: approximate
BACKENDS = (BACKEND_AUTO, BACKEND_EXACT, BACKEND_FLAT, BACKEND_IVF)
RANGE_BATCH = 4096  # queries of one flat range search (bounds the result buffers)
EXACT_COLUMNS = 65536  # faces compared with the recall sample at a time
JOIN_PROGRESS = 64  # lists of the self-join between progress reports
# The recall sample's 95% interval: the sampled faces drawn again with replacement this many
# times (a face's neighbours are not independent of each other, so the faces are what is drawn).
RECALL_RESAMPLES = 2000
HOP_PAIRS = 1 << 22  # candidate pairs of the neighbours-of-neighbours pass scored at a time


@dataclass(frozen=True)
class SearchParams:
    """How the neighbour graph is searched; defaults from settings."""

    # Read from settings when made (not at import), so a deployment or a test can lower them.
    backend: str = field(default_factory=lambda: settings.clustering().neighbours.search)
    ann_min_faces: int = field(
        default_factory=lambda: settings.clustering().neighbours.ann_min_faces
    )
    nlist: int = field(
        default_factory=lambda: settings.clustering().neighbours.ann_nlist
    )  # 0: from the store's size
    nprobe: int = field(default_factory=lambda: settings.clustering().neighbours.ann_nprobe)
    # probes of the second pass (faces whose k nearest all lie within the distance, or with room)
    dense_nprobe: int = field(
        default_factory=lambda: settings.clustering().neighbours.ann_dense_nprobe
    )
    # faces whose list has room take the second pass too
    room_again: bool = field(
        default_factory=lambda: settings.clustering().neighbours.ann_room_again
    )
    # rounds of the pass scoring the neighbours of neighbours of the faces whose list has room
    hop_rounds: int = field(default_factory=lambda: settings.clustering().neighbours.ann_hop_rounds)
    k: int = field(default_factory=lambda: settings.clustering().neighbours.ann_neighbours)
    train_per_list: int = field(
        default_factory=lambda: settings.clustering().neighbours.ann_train_per_list
    )
    recall_queries: int = field(
        default_factory=lambda: settings.clustering().neighbours.ann_recall_queries
    )
    query_batch: int = field(
        default_factory=lambda: settings.clustering().neighbours.ann_query_batch
    )
    seed: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"neighbour search must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("nprobe", "dense_nprobe", "k", "train_per_list", "query_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if min(self.nlist, self.recall_queries, self.ann_min_faces, self.hop_rounds) < 0:
            raise ValueError(
                "nlist, recall_queries, ann_min_faces and hop_rounds must not be negative"
            )

    def chosen(self, n: int) -> str:
        """The backend used for a store of n faces."""
        if self.backend != BACKEND_AUTO:
            return self.backend
        return BACKEND_IVF if n >= self.ann_min_faces else BACKEND_FLAT

    def lists_for(self, n: int) -> int:
        """Inverted lists for n faces: the setting, else about 4 sqrt(n), never above n / 8."""
        want = self.nlist or int(round(4 * np.sqrt(n)))
        return int(max(1, min(want, n // 8)))


@dataclass
class SearchReport:
    """What the manifest records about one neighbour search."""

    backend: str
    faces: int
    pairs: int = 0
    nlist: int | None = None
    nprobe: int | None = None
    k: int | None = None
    dense_nprobe: int | None = None
    dense_faces: int = 0  # faces searched again with dense_nprobe (their k nearest all within)
    room_faces: int = 0  # faces whose list has room, searched again with dense_nprobe
    hop_faces: int = 0  # faces whose neighbours' neighbours were scored (their list had room)
    hop_found: int = 0  # neighbours those faces' lists gained from them
    recall: float | None = None  # None: exact search (recall 1 by construction)
    graph_recall: float | None = None  # the same neighbours, found from either end
    recall_interval: tuple[float, float] | None = None  # recall's 95% interval (the sample's)
    recall_queries: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    # Faces whose k nearest all lie within the distance: they may have more neighbours than the
    # graph holds (None: exact search, nothing truncated). Not in the manifest.
    truncated: np.ndarray | None = field(default=None, repr=False)
    completed: int = 0  # merges of the linkage's completion pass over truncated clusters

    def as_json(self) -> dict[str, str | int | float | None]:
        out: dict[str, str | int | float | None] = {
            "backend": self.backend,
            "faces": self.faces,
            "pairs": self.pairs,
        }
        if self.backend == BACKEND_IVF:
            out.update(nlist=self.nlist, nprobe=self.nprobe, k=self.k)
            out.update(dense_nprobe=self.dense_nprobe, dense_faces=self.dense_faces)
            out["room_faces"] = self.room_faces
            out.update(hop_faces=self.hop_faces, hop_found=self.hop_found)
            out["completed_merges"] = self.completed
            out["recall"] = None if self.recall is None else round(self.recall, 6)
            graph = self.graph_recall
            out["graph_recall"] = None if graph is None else round(graph, 6)
            interval = self.recall_interval
            out["recall_low"] = None if interval is None else round(interval[0], 6)
            out["recall_high"] = None if interval is None else round(interval[1], 6)
            out["recall_queries"] = self.recall_queries
        else:
            out["recall"] = 1.0
        return out  # no timings: a re-run writes the same manifest


def use_cores() -> None:
    """faiss runs on the cores this process may use (its affinity), not every core present."""
    faiss.omp_set_num_threads(settings.usable_cores())


def _empty(dtype: np.dtype[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, dtype)


def _float32(unit: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(unit, dtype=np.float32)


def flat_range_edges(
    unit: np.ndarray, max_distance: float, *, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j of unit rows with cosine distance <= max_distance (exact)."""
    use_cores()
    x = _float32(unit)
    n, d = x.shape
    index = faiss.IndexFlatIP(d)
    index.add(x)
    # faiss keeps similarities strictly above the radius; nextafter makes it "at least".
    radius = float(np.nextafter(np.float32(1.0 - max_distance), np.float32(-np.inf)))
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    found_s: list[np.ndarray] = []
    batches = max(1, -(-n // RANGE_BATCH))
    for b, r0 in enumerate(range(0, n, RANGE_BATCH)):
        r1 = min(n, r0 + RANGE_BATCH)
        lims, sims, ids = index.range_search(x[r0:r1], radius)
        rows = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(lims).astype(np.int64))
        keep = ids > rows
        found_i.append(rows[keep].astype(np.int32))
        found_j.append(ids[keep].astype(np.int32))
        found_s.append(sims[keep])
        if progress is not None:
            progress(b + 1, batches)
    del index
    if not found_i:
        return _empty(np.dtype(np.float32))
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)


def train_ivf(x: np.ndarray, nlist: int, train_per_list: int, seed: int) -> faiss.IndexIVFFlat:
    """An inner-product IVF index of float32 unit rows, its lists' centres trained on a sample
    of x (k-means); nothing added yet."""
    use_cores()
    n, d = x.shape
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = 10  # coarse centres: more iterations barely change recall
    index.cp.max_points_per_centroid = train_per_list
    rng = np.random.default_rng(seed)
    take = min(n, nlist * train_per_list)
    sample = x if take == n else np.take(x, np.sort(rng.choice(n, take, replace=False)), 0)
    index.train(sample)
    del sample
    index.own_fields = True  # the index frees its quantizer
    quantizer.this.disown()  # type: ignore[attr-defined]  # SWIG's proxy handle, not in the stubs
    return index


def build_ivf(x: np.ndarray, nlist: int, train_per_list: int, seed: int) -> faiss.IndexIVFFlat:
    """An inner-product IVF index of the float32 unit rows x, trained on a sample of them."""
    index = train_ivf(x, nlist, train_per_list, seed)
    index.add(x)
    return index


def _probes(quantizer: faiss.Index, x: np.ndarray, nprobe: int, batch: int) -> np.ndarray:
    """(n, nprobe): the lists nearest to each row, nearest first (the row's own list); int16
    where the list numbers fit (a million faces' 64 probes: 128 MiB)."""
    dtype = np.int16 if quantizer.ntotal <= np.iinfo(np.int16).max else np.int32
    out = np.empty((x.shape[0], nprobe), dtype)
    for s in range(0, x.shape[0], batch):
        out[s : s + batch] = quantizer.search(x[s : s + batch], nprobe)[1]
    return out


def _self_join_knn(
    x: np.ndarray,
    assign: np.ndarray,
    nlist: int,
    queries: np.ndarray,
    probes: np.ndarray,
    k: int,
    min_sim: float,
    progress: Progress | None,
    start: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest of the rows `queries` of x among the lists each probes: (similarities, ids),
    one row per query; `start` holds what the queries found in other lists (merged in).

    The same candidates as an IVFFlat search of those rows against x with these probes (every
    face is in the list of its nearest centre, `assign`), found list by list: the queries
    probing list L times L's members is one matrix product (BLAS, near the cores' peak rate,
    where IVFFlat compares one query with one stored face at a time), whose rows go into each
    query's running top-k heap. Heaps start at just below min_sim, so a similarity below it
    costs one comparison and never enters: slots left empty hold id -1.
    """
    nprobe = probes.shape[1]
    members = np.argsort(assign, kind="stable")
    member_bounds = np.searchsorted(assign[members], np.arange(nlist + 1))
    flat = probes.reshape(-1)
    probing = np.argsort(flat, kind="stable")  # positions in `flat`, grouped by list
    query_bounds = np.searchsorted(flat[probing], np.arange(nlist + 1))
    probing //= nprobe  # the query (row of `queries`) of each position
    heap = faiss.ResultHeap(queries.size, k, keep_max=True)
    heap.D.fill(np.nextafter(np.float32(min_sim), np.float32(-np.inf)))
    if start is not None:
        heap.add_result(*start)
    # One thread feeds the heaps (faiss releases the GIL) while the next product runs on BLAS's
    # threads: the heaps take a quarter of the time the products do. One feed at a time, so a
    # face's heap is never written by two threads.
    faiss.omp_set_num_threads(1)
    pending: Future[None] | None = None
    config = settings.clustering().neighbours
    gathered = np.empty((min(config.ann_join_rows, queries.size), x.shape[1]), x.dtype)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="ivf-heaps") as feeder:
            for lst in range(nlist):
                mem = members[member_bounds[lst] : member_bounds[lst + 1]]
                local = probing[query_bounds[lst] : query_bounds[lst + 1]]
                if mem.size and local.size:
                    stored = np.take(x, mem, axis=0).T.copy()
                    rows = max(1, min(gathered.shape[0], config.ann_join_block // mem.size))
                    for s in range(0, local.size, rows):
                        sub = local[s : s + rows]
                        # Into the reused buffer; mode "clip" (the ids are all valid) because
                        # with "raise" numpy gathers into a temporary first.
                        into = gathered[: sub.size]
                        np.take(x, queries[sub], axis=0, out=into, mode="clip")
                        block = into @ stored
                        if pending is not None:
                            pending.result()
                        pending = feeder.submit(heap.add_result_subset, sub, block, mem)
                if progress is not None and ((lst + 1) % JOIN_PROGRESS == 0 or lst + 1 == nlist):
                    progress(lst + 1, nlist)
            if pending is not None:
                pending.result()
    finally:
        use_cores()
    heap.finalize()  # each row sorted, most similar first
    return heap.D, heap.I


def _pairs_from_knn(
    sims: np.ndarray, ids: np.ndarray, min_sim: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) among the k-nearest lists within min_sim, each pair once."""
    n, k = ids.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = ids.reshape(-1)
    s = sims.reshape(-1)
    keep = (cols >= 0) & (cols != rows) & (s >= min_sim)
    rows, cols, s = rows[keep], cols[keep], s[keep]
    del keep
    key = np.minimum(rows, cols) * n + np.maximum(rows, cols)
    del rows, cols
    key, first = np.unique(key, return_index=True)  # a pair found from both ends, once
    s = s[first]
    del first
    ei = (key // n).astype(np.int32)
    ej = (key % n).astype(np.int32)
    return ei, ej, s


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions starts[i] .. starts[i] + lengths[i] - 1 of every i, concatenated."""
    lengths = lengths.astype(np.int64)
    offsets = starts.astype(np.int64) - np.cumsum(lengths) + lengths
    return np.repeat(offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _lists_graph(ids: np.ndarray, within: np.ndarray) -> csr_matrix:
    """Each face's k-nearest list (the slots `within` the distance, itself left out) as an
    n x n graph row."""
    n = ids.shape[0]
    within = within & (ids != np.arange(n)[:, None])
    indptr = np.concatenate([[0], np.cumsum(within.sum(axis=1))])
    cols = ids[within].astype(np.int32)
    return csr_matrix((np.ones(cols.size, np.float32), cols, indptr), shape=(n, n))


def _top_of_rows(
    x: np.ndarray, rows: np.ndarray, cand: csr_matrix, k: int, min_sim: float
) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, ids), k per row, most similar first: the best candidates within min_sim
    of each face `rows[r]` among row r of `cand` (empty slots: just below min_sim, id -1)."""
    counts = np.diff(cand.indptr)
    top_s = np.full((rows.size, k), np.nextafter(np.float32(min_sim), np.float32(-np.inf)))
    top_i = np.full((rows.size, k), -1, np.int64)
    # rows of similar candidate counts share one padded width (at most twice their count)
    width = 1 << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    for w in np.unique(width):
        rr = np.flatnonzero(width == w)
        c = counts[rr]
        ends = np.cumsum(c)
        pos = np.arange(int(ends[-1]), dtype=np.int64)
        pos -= np.repeat(ends - c, c)  # slot within the row
        padded = np.full((rr.size, int(w)), -1, np.int64)
        padded[np.repeat(np.arange(rr.size), c), pos] = cand.indices[_ragged(cand.indptr[rr], c)]
        del pos
        xq = np.take(x, rows[rr], axis=0)
        out = np.empty(padded.shape, np.float32)  # -inf where the id is -1
        faiss.fvec_inner_products_by_idx(  # type: ignore[attr-defined]  # not in the stubs
            faiss.swig_ptr(out),
            faiss.swig_ptr(xq),
            faiss.swig_ptr(x),
            faiss.swig_ptr(padded),
            x.shape[1],
            rr.size,
            int(w),
        )
        best = np.argsort(-out, axis=1, kind="stable")[:, :k]
        s = np.take_along_axis(out, best, axis=1)
        i = np.take_along_axis(padded, best, axis=1)
        i[s < min_sim] = -1
        top_s[rr, : s.shape[1]] = np.where(s < min_sim, top_s[rr, : s.shape[1]], s)
        top_i[rr, : i.shape[1]] = i
    return top_s, top_i


def _hop_pass(x: np.ndarray, sims: np.ndarray, ids: np.ndarray, min_sim: float) -> tuple[int, int]:
    """Score the neighbours of neighbours of each face whose list has room (fewer than k within
    min_sim), in place: (faces scored, neighbours their lists gained).

    Such a face's nearest may lie in lists it did not probe (a small identity's faces scatter
    over lists: each sits nearest the centre its own noise points to), but its identity's other
    faces often found them, or found it. Its neighbours in the graph (found from either end),
    their own lists and itself are scored exactly; the best k within min_sim are its new list.
    """
    n, k = ids.shape
    within = (sims >= min_sim) & (ids >= 0)
    lists = _lists_graph(ids, within)
    graph = (lists + lists.T).tocsr()  # either end
    deg = np.diff(graph.indptr).astype(np.int64)
    queries = np.flatnonzero(~within[:, k - 1] & (deg > 0))
    if not queries.size:
        return 0, 0
    before = int(within[queries].sum())
    del within
    # chunks of about HOP_PAIRS candidates (at most k + 1 through each neighbour) bound memory
    cum = np.cumsum(deg[queries] * (k + 1))
    cuts = np.searchsorted(cum, np.arange(1, int(cum[-1]) // HOP_PAIRS + 1) * HOP_PAIRS, "right")
    bounds = np.unique(np.concatenate([[0], cuts, [queries.size]]))
    for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
        chunk = queries[b0:b1]
        near = graph[chunk]
        itself = csr_matrix(
            (np.ones(chunk.size, np.float32), chunk, np.arange(chunk.size + 1)),
            shape=(chunk.size, n),
        )
        cand = (near @ lists + near + itself).tocsr()
        del near, itself
        sims[chunk], ids[chunk] = _top_of_rows(x, chunk, cand, k, min_sim)
        del cand
    after = int(((sims[queries] >= min_sim) & (ids[queries] >= 0)).sum())
    return int(queries.size), after - before


def exact_knn_within(
    x: np.ndarray, queries: np.ndarray, k: int, min_sim: float
) -> list[np.ndarray]:
    """Per query row, its (at most k) nearest other faces with similarity >= min_sim."""
    n = x.shape[0]
    q = x[queries]
    found_r: list[np.ndarray] = []
    found_c: list[np.ndarray] = []
    found_s: list[np.ndarray] = []
    for c0 in range(0, n, EXACT_COLUMNS):
        block = q @ x[c0 : c0 + EXACT_COLUMNS].T
        r, c = np.nonzero(block >= min_sim)
        keep = c + c0 != queries[r]  # a face is not its own neighbour
        found_r.append(r[keep])
        found_c.append(c[keep] + c0)
        found_s.append(block[r[keep], c[keep]])
    rows, cols, sims = (np.concatenate(p) for p in (found_r, found_c, found_s))
    order = np.lexsort((cols, -sims, rows))  # per query, most similar first
    rows, cols = rows[order], cols[order]
    bounds = np.searchsorted(rows, np.arange(queries.size + 1))
    return [cols[bounds[r] : min(bounds[r + 1], bounds[r] + k)] for r in range(queries.size)]


@dataclass(frozen=True)
class RecallEstimate:
    """Recall of a neighbour search on a sample of faces, against brute force."""

    listed: float | None  # share of each face's exact nearest that its own list returned
    graph: float | None  # share the graph holds as pairs, found from either end
    interval: tuple[float, float] | None  # `listed`'s 95% bootstrap interval over the faces
    queries: int  # faces sampled


def measure_recall(
    x: np.ndarray,
    ids: np.ndarray,
    sims: np.ndarray,
    k: int,
    min_sim: float,
    queries: int,
    seed: int,
) -> tuple[float | None, int]:
    """(recall, queries measured): returned neighbours among the exact k nearest within min_sim.

    None when no sampled query has a neighbour within the distance (nothing to miss).
    """
    estimate = measure_recalls(x, ids, sims, k, min_sim, queries, seed)
    return estimate.listed, estimate.queries


def measure_recalls(
    x: np.ndarray,
    ids: np.ndarray,
    sims: np.ndarray,
    k: int,
    min_sim: float,
    queries: int,
    seed: int,
) -> RecallEstimate:
    """List and graph recall on a random sample of the faces, and the list recall's interval.

    List recall: the share of each sampled face's exact k nearest within min_sim that its own
    list returned. Graph recall: the share that the graph holds as pairs, found from either
    end (the sampled face's list or the neighbour's), which is what the linkage sees.
    """
    n = x.shape[0]
    if queries == 0 or n < 2:
        return RecallEstimate(None, None, None, 0)
    rng = np.random.default_rng(seed + 1)
    sample = np.sort(rng.choice(n, min(n, queries), replace=False))
    truth = exact_knn_within(x, sample, k, min_sim)
    wanted = np.zeros(sample.size, np.int64)
    found = np.zeros(sample.size, np.int64)
    joined = 0
    for r, q in enumerate(sample):
        got = ids[q][(sims[q] >= min_sim) & (ids[q] != q)]
        wanted[r] = truth[r].size
        mine = np.isin(truth[r], got)
        found[r] = int(mine.sum())
        theirs = truth[r][~mine]  # missed from q's end: did the neighbour find q?
        back = (ids[theirs] == q) & (sims[theirs] >= min_sim)
        joined += int(mine.sum()) + int(back.any(axis=1).sum())
    total = int(wanted.sum())
    if not total:
        return RecallEstimate(None, None, None, int(sample.size))
    picks = np.random.default_rng(seed + 2).integers(
        0, sample.size, (RECALL_RESAMPLES, sample.size)
    )
    drawn = found[picks].sum(axis=1) / np.maximum(wanted[picks].sum(axis=1), 1)
    low, high = (float(v) for v in np.quantile(drawn, [0.025, 0.975]))
    return RecallEstimate(int(found.sum()) / total, joined / total, (low, high), int(sample.size))


def ivf_knn_edges(
    unit: np.ndarray,
    max_distance: float,
    params: SearchParams,
    *,
    progress: Progress | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], SearchReport]:
    """Pairs among each face's k nearest (IVF search) within max_distance, and the report."""
    x = _float32(unit)
    n = x.shape[0]
    report = SearchReport(BACKEND_IVF, n, nprobe=params.nprobe, k=params.k)
    if n < 2:
        report.nlist = 0
        report.truncated = np.zeros(n, bool)
        return _empty(np.dtype(np.float32)), report
    started = time.perf_counter()
    nlist = params.lists_for(n)
    index = train_ivf(x, nlist, params.train_per_list, params.seed)
    nprobe = min(params.nprobe, nlist)
    dense_nprobe = min(max(params.dense_nprobe, nprobe), nlist)
    second = dense_nprobe > nprobe
    # Every face's probes of both passes from one search of the centres: the second pass's
    # faces are known only after the first, and searching them again costs as much again.
    nearest = _probes(index.quantizer, x, dense_nprobe if second else nprobe, params.query_batch)
    probes = np.ascontiguousarray(nearest[:, :nprobe])
    assign = probes[:, 0].copy()  # each face's own list: its nearest centre
    built = time.perf_counter()
    k = min(params.k + 1, n)  # each face finds itself first
    min_sim = float(np.float32(1.0 - max_distance))

    def first_progress(done: int, total: int) -> None:
        if progress is not None:
            progress(done, 2 * total if second else total)

    everyone = np.arange(n, dtype=np.int64)
    sims, ids = _self_join_knn(x, assign, nlist, everyone, probes, k, min_sim, first_progress)
    del probes, everyone
    # A face whose k nearest all lie within the distance sits where lists are dense (a large
    # identity spread over many lists): its k nearest may lie in lists it did not probe, so it
    # is searched again over more of them: the lists after the first probes (nearest first),
    # merged with what those found. So is a face whose list has room (room_again): a small
    # identity's faces scatter over lists, and a neighbour found in a farther list is one more
    # start for the hop rounds below; a face whose first lists held no neighbour at all may
    # find its first there (at 1M faces, a tenth of the faces left alone before joined a
    # cluster: BCubed recall 0.952 -> 0.965).
    full = sims[:, k - 1] >= min_sim
    room = ~full if params.room_again and k > 1 else np.zeros(n, bool)
    again = np.flatnonzero(full | room)
    if second and again.size:
        more = np.ascontiguousarray(nearest[again, nprobe:])

        def second_progress(done: int, total: int) -> None:
            if progress is not None:
                progress(total + done, 2 * total)

        sims[again], ids[again] = _self_join_knn(
            x, assign, nlist, again, more, k, min_sim, second_progress, (sims[again], ids[again])
        )
        del more
    del index, assign, nearest
    report.dense_nprobe = dense_nprobe
    report.dense_faces = int(full.sum()) if second else 0
    report.room_faces = int(room.sum()) if second else 0
    del full, room, again
    hopped = time.perf_counter()
    for _ in range(params.hop_rounds):
        faces, found = _hop_pass(x, sims, ids, min_sim)
        report.hop_faces = max(report.hop_faces, faces)
        report.hop_found += found
        if not found:
            break
    report.truncated = sims[:, k - 1] >= min_sim
    searched = time.perf_counter()
    estimate = measure_recalls(x, ids, sims, k - 1, min_sim, params.recall_queries, params.seed)
    measured_at = time.perf_counter()
    edges = _pairs_from_knn(sims, ids, min_sim)
    del sims, ids
    report.nlist = nlist
    report.nprobe = nprobe
    report.pairs = int(edges[0].size)
    report.recall, report.recall_queries = estimate.listed, estimate.queries
    report.graph_recall, report.recall_interval = estimate.graph, estimate.interval
    report.seconds = {
        "index": built - started,
        "search": hopped - built,
        "hops": searched - hopped,
        "recall": measured_at - searched,
        "pairs": time.perf_counter() - measured_at,
    }
    log.info(
        "ivf neighbour search",
        faces=n,
        nlist=nlist,
        nprobe=nprobe,
        k=k - 1,
        dense_faces=report.dense_faces,
        dense_nprobe=dense_nprobe,
        hop_faces=report.hop_faces,
        hop_found=report.hop_found,
        pairs=report.pairs,
        recall=estimate.listed,
        recall_interval=estimate.interval,
        graph_recall=estimate.graph,
        **{f"{key}_s": round(v, 2) for key, v in report.seconds.items()},
    )
    return edges, report


# --- nearest centroid through an index (extend) ----------------------------------------------


def nearest_rows(
    x: np.ndarray, centroids: np.ndarray, params: SearchParams, backend: str
) -> tuple[np.ndarray, np.ndarray]:
    """(row of the nearest centroid, its similarity) per unit row of x, through faiss.

    `backend` "flat" searches every centroid (exact); "ivf" an inverted-file index over the
    centroids, each face scanning the `nprobe` lists nearest to it.
    """
    use_cores()
    c = _float32(centroids)
    q = _float32(x)
    if backend == BACKEND_IVF:
        nlist = params.lists_for(c.shape[0])
        index: faiss.Index = build_ivf(c, nlist, params.train_per_list, params.seed)
        index.nprobe = min(params.nprobe, nlist)  # type: ignore[attr-defined]  # IVF's own field
    else:
        index = faiss.IndexFlatIP(c.shape[1])
        index.add(c)
    sims = np.empty(q.shape[0], np.float32)
    rows = np.empty(q.shape[0], np.int64)
    for s in range(0, q.shape[0], params.query_batch):
        dd, ii = index.search(q[s : s + params.query_batch], 1)
        sims[s : s + params.query_batch], rows[s : s + params.query_batch] = dd[:, 0], ii[:, 0]
    return rows, sims
