"""Exact sparse average linkage by the nearest-neighbour chain, compiled with numba.

The same clusters as the reciprocal-nearest-neighbour rounds of `linkage._linkage_of_clusters`
(which it replaces for large tasks), but a merge only does work where clusters changed. Each
pair of clusters linked in the graph is one entry of a pair table (the summed similarity of the
face pairs known so far, and how many face pairs that sum covers); each cluster keeps the list
of its pairs' entries. A merge folds the smaller list into the larger one (pairs both clusters
have with a third are summed into one entry, the others change an end), and the chain asks for
the nearest neighbour of one cluster at a time. Average linkage is reducible (a union is never
nearer to a third cluster than the nearer of its parts; cannot-link pairs count as infinitely
far and keep it so), so the chain's reciprocal pairs are the greedy merges; pairs are ordered by
(distance, smaller id, larger id), ids being each cluster's smallest member, so ties break as
the greedy method breaks them and as the rounds do.

Distances are exact: a pair whose face pairs are not all known carries bounds (every unknown
face-pair similarity in [-1, 1]) and is summed from the clusters' sum vectors only when the
bounds leave it a candidate for a nearest neighbour or leave its side of the threshold open.

numba is imported only here, and this module only for tasks large enough to pay its start-up
(setting `linkage.chain_min_pairs`); the kernels are cached on disk after their first compilation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, types
from numba.typed import Dict, List

_INT = types.int64
# Merges between two returns to Python (progress, and a point where the work can be observed).
MERGES_PER_CALL = 4096


@njit(cache=True, nogil=True)
def _dot(sums: np.ndarray, a: int, b: int) -> float:
    """The dot product of two sum vectors (four partial sums, so the loop pipelines)."""
    d = sums.shape[1]
    s0 = s1 = s2 = s3 = 0.0
    k = 0
    while k + 4 <= d:
        s0 += sums[a, k] * sums[b, k]
        s1 += sums[a, k + 1] * sums[b, k + 1]
        s2 += sums[a, k + 2] * sums[b, k + 2]
        s3 += sums[a, k + 3] * sums[b, k + 3]
        k += 4
    while k < d:
        s0 += sums[a, k] * sums[b, k]
        k += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True)
def _bounds(known: float, cover: float, area: float, slack: float) -> tuple[float, float]:
    """(lower, upper) bound of a pair's average distance; both exact when all pairs are known."""
    unknown = area - cover
    if unknown == 0.0:
        d = 1.0 - known / area
        return d, d
    return 1.0 - (known + unknown) / area - slack, 1.0 - (known - unknown) / area + slack


@njit(cache=True, nogil=True)
def _before(d1: float, a1: int, b1: int, d2: float, a2: int, b2: int) -> bool:
    """Whether pair 1 comes before pair 2: by distance, then smaller id, then larger id."""
    if d1 != d2:
        return d1 < d2
    lo1, hi1 = min(a1, b1), max(a1, b1)
    lo2, hi2 = min(a2, b2), max(a2, b2)
    if lo1 != lo2:
        return lo1 < lo2
    return hi1 < hi2


@njit(cache=True, nogil=True)
def _other(pa: np.ndarray, pb: np.ndarray, pid: int, x: int) -> int:
    return pb[pid] if pa[pid] == x else pa[pid]


@njit(cache=True, nogil=True)
def _count_prevented(prevented: Dict, minid: np.ndarray, a: int, b: int, m: int) -> None:
    lo, hi = min(minid[a], minid[b]), max(minid[a], minid[b])
    prevented[lo * m + hi] = 1


@njit(cache=True, nogil=True)
def _is_below(
    pid: int,
    a: int,
    b: int,
    known: np.ndarray,
    cover: np.ndarray,
    sums: np.ndarray,
    sizes: np.ndarray,
    t: float,
    slack: float,
) -> bool:
    """Whether pair `pid` of clusters a and b is below the threshold; summed exactly from the
    sum vectors where the bounds straddle it."""
    area = sizes[a] * sizes[b]
    lo, hi = _bounds(known[pid], cover[pid], area, slack)
    if lo >= t:
        return False
    if hi < t:
        return True
    known[pid] = _dot(sums, a, b)
    cover[pid] = area
    return 1.0 - known[pid] / area < t


@njit(cache=True, nogil=True)
def _blocked_map(blk: List, at: np.ndarray, a: int) -> Dict:
    """Cluster a's map of clusters it may never merge with, made on first use."""
    if at[a] < 0:
        at[a] = len(blk)
        blk.append(Dict.empty(_INT, _INT))
    return blk[at[a]]


@njit(cache=True, nogil=True)
def init_state(
    sizes: np.ndarray,
    pa: np.ndarray,
    pb: np.ndarray,
    known: np.ndarray,
    cover: np.ndarray,
    alive: np.ndarray,
    bu: np.ndarray,
    bv: np.ndarray,
    lists: np.ndarray,
) -> tuple[np.ndarray, List, np.ndarray, Dict]:
    """Each cluster's list of pair ids (a segment of one pool: `lists` holds per cluster its
    start, length and capacity), cannot-link maps (with each cluster's slot in them, -1 for
    none), and the prevented merges among the given pairs (a pair both linked and blocked is
    dropped and counted: the caller passes pairs below the threshold or not yet decided)."""
    m = sizes.size
    for e in range(pa.size):
        lists[pa[e], 2] += 1
        lists[pb[e], 2] += 1
    top = 0
    for i in range(m):
        lists[i, 0] = top
        top += lists[i, 2]
    pool = np.empty(max(16, top + top // 2), np.int32)  # room to grow before the pool does
    for e in range(pa.size):
        for c in (pa[e], pb[e]):
            pool[lists[c, 0] + lists[c, 1]] = e
            lists[c, 1] += 1
    blk = List()
    blk.append(Dict.empty(_INT, _INT))  # typed by a first element; no cluster points at it
    at = np.full(m, -1, np.int64)
    prevented = Dict.empty(_INT, _INT)
    minid = np.arange(m)
    for e in range(bu.size):
        a, b = bu[e], bv[e]
        if a == b:
            continue
        _blocked_map(blk, at, a)[b] = 1
        _blocked_map(blk, at, b)[a] = 1
        for i in range(lists[a, 1]):
            pid = pool[lists[a, 0] + i]
            if alive[pid] and _other(pa, pb, pid, a) == b:
                _count_prevented(prevented, minid, a, b, m)
                alive[pid] = False
    return pool, blk, at, prevented


@njit(cache=True, nogil=True)
def _nearest(
    pool: np.ndarray,
    lists: np.ndarray,
    pa: np.ndarray,
    pb: np.ndarray,
    known: np.ndarray,
    cover: np.ndarray,
    alive: np.ndarray,
    sums: np.ndarray,
    sizes: np.ndarray,
    minid: np.ndarray,
    x: int,
    t: float,
    slack: float,
    held: np.ndarray,
    held_lo: np.ndarray,
) -> int:
    """The nearest neighbour of x below the threshold, exactly (-1 when none). Pairs found
    at or past the threshold are dropped (they never come below it again), and x's list
    loses its dropped pairs. `held` and `held_lo`: room for the candidates (as many as the
    pair table's pairs)."""
    s, n = lists[x, 0], lists[x, 1]
    sx = sizes[x]
    cap = np.inf
    w = 0
    c = 0
    for i in range(n):
        pid = pool[s + i]
        if not alive[pid]:
            continue
        area = sx * sizes[_other(pa, pb, pid, x)]
        lo, hi = _bounds(known[pid], cover[pid], area, slack)
        if lo >= t:
            alive[pid] = False
            continue
        pool[s + w] = pid
        w += 1
        if hi < cap:
            cap = hi
        # A candidate while its lower bound is within the cap so far (the cap only falls), so
        # the second pass goes over these, not over the whole list again.
        if lo <= cap:
            held[c] = pid
            held_lo[c] = lo
            c += 1
    lists[x, 1] = w
    best = -1
    best_d = np.inf
    for i in range(c):
        if held_lo[i] > cap:
            continue
        pid = held[i]
        z = _other(pa, pb, pid, x)
        area = sx * sizes[z]
        if cover[pid] != area:
            known[pid] = _dot(sums, x, z)
            cover[pid] = area
        d = 1.0 - known[pid] / area
        if d >= t:
            alive[pid] = False
            continue
        if best < 0 or _before(d, minid[x], minid[z], best_d, minid[x], minid[best]):
            best, best_d = z, d
    return best


@njit(cache=True, nogil=True)
def _room(pool: np.ndarray, lists: np.ndarray, state: np.ndarray, c: int, more: int) -> np.ndarray:
    """Make room for `more` pair ids on cluster c's list: a new segment at the pool's top
    (twice the size), the pool itself grown when full. Returns the pool."""
    need = lists[c, 1] + more
    if need <= lists[c, 2]:
        return pool
    size = max(2 * lists[c, 2], need)
    top = state[3]
    if top + size > pool.size:
        grown = np.empty(max(2 * pool.size, top + size), np.int32)
        grown[:top] = pool[:top]
        pool = grown
    pool[top : top + lists[c, 1]] = pool[lists[c, 0] : lists[c, 0] + lists[c, 1]]
    lists[c, 0] = top
    lists[c, 2] = size
    state[3] = top + size
    return pool


@njit(cache=True, nogil=True)
def _merge(
    pool: np.ndarray,
    lists: np.ndarray,
    pa: np.ndarray,
    pb: np.ndarray,
    known: np.ndarray,
    cover: np.ndarray,
    alive: np.ndarray,
    seen: np.ndarray,
    where: np.ndarray,
    blk: List,
    at: np.ndarray,
    prevented: Dict,
    sums: np.ndarray,
    sizes: np.ndarray,
    minid: np.ndarray,
    parent: np.ndarray,
    state: np.ndarray,
    x: int,
    y: int,
    t: float,
    slack: float,
) -> np.ndarray:
    """Merge clusters x and y into the one with the longer list (its slot survives): a pair
    both have with a third cluster is summed into one, the smaller side's other pairs move.
    Returns the pool (grown if it had to be)."""
    m = sizes.size
    if lists[x, 1] >= lists[y, 1]:
        big, small = x, y
    else:
        big, small = y, x
    state[2] += 1
    stamp = state[2]
    s, n = lists[big, 0], lists[big, 1]
    s2, n2 = lists[small, 0], lists[small, 1]
    # Which of the smaller side's neighbours the larger side has a pair with: found in those
    # neighbours' own lists where they are shorter in all than the larger side's list (a large
    # cluster taking in small ones one by one), else by marking the larger side's neighbours.
    probe = 0
    for i in range(n2):
        pid = pool[s2 + i]
        z = _other(pa, pb, pid, small)
        if alive[pid] and z != big:
            probe += lists[z, 1]
    if probe < n and at[big] < 0 and at[small] < 0:
        for i in range(n2):
            pid = pool[s2 + i]
            if not alive[pid]:
                continue
            z = _other(pa, pb, pid, small)
            if z == big:
                continue
            for j in range(lists[z, 1]):
                q = pool[lists[z, 0] + j]
                if alive[q] and _other(pa, pb, q, z) == big:
                    seen[z] = stamp
                    where[z] = q
                    break
    else:
        for i in range(n):
            pid = pool[s + i]
            if not alive[pid]:
                continue
            z = _other(pa, pb, pid, big)
            if z == small:
                continue
            seen[z] = stamp
            where[z] = pid
    pool = _room(pool, lists, state, big, n2)
    s2 = lists[small, 0]
    for i in range(n2):
        pid = pool[s2 + i]
        if not alive[pid]:
            continue
        z = _other(pa, pb, pid, small)
        if z == big:
            alive[pid] = False
        elif seen[z] == stamp:
            q = where[z]
            known[q] += known[pid]
            cover[q] += cover[pid]
            alive[pid] = False
        else:
            if pa[pid] == small:
                pa[pid] = big
            else:
                pb[pid] = big
            pool[lists[big, 0] + lists[big, 1]] = pid
            lists[big, 1] += 1
            seen[z] = stamp
            where[z] = pid
    lists[small, 1] = 0
    sums[big] += sums[small]
    sizes[big] += sizes[small]
    minid[big] = min(minid[big], minid[small])
    parent[small] = big
    if at[small] >= 0:  # clusters blocked with either side are blocked with the union
        bs = blk[at[small]]
        bb = _blocked_map(blk, at, big)
        for z in bs:
            bz = blk[at[z]]
            del bz[small]
            bz[big] = 1
            bb[z] = 1
        bs.clear()
        at[small] = -1
    if at[big] >= 0:  # a blocked pair is never linked: counted when it is below threshold
        for z in blk[at[big]]:
            if seen[z] == stamp and alive[where[z]]:
                pid = where[z]
                if _is_below(pid, big, z, known, cover, sums, sizes, t, slack):
                    _count_prevented(prevented, minid, big, z, m)
                alive[pid] = False
    return pool


@njit(cache=True, nogil=True)
def run(
    pool: np.ndarray,
    lists: np.ndarray,
    pa: np.ndarray,
    pb: np.ndarray,
    known: np.ndarray,
    cover: np.ndarray,
    alive: np.ndarray,
    blk: List,
    at: np.ndarray,
    prevented: Dict,
    sums: np.ndarray,
    sizes: np.ndarray,
    minid: np.ndarray,
    parent: np.ndarray,
    chain: np.ndarray,
    seen: np.ndarray,
    where: np.ndarray,
    state: np.ndarray,
    t: float,
    slack: float,
    max_merges: int,
    held: np.ndarray,
    held_lo: np.ndarray,
) -> tuple[int, np.ndarray]:
    """Go on with the chain for up to `max_merges` merges: (merges made, 0 when done; pool).

    `state` holds [chain length, next cluster to start a chain from, merge stamp, pool top];
    `chain` the chain; `held` and `held_lo` are _nearest's room for candidates.
    """
    m = sizes.size
    merges = 0
    while merges < max_merges:
        top = state[0]
        if top == 0:
            start = state[1]
            while start < m and (parent[start] != start or lists[start, 1] == 0):
                start += 1
            state[1] = start
            if start >= m:
                break
            chain[0] = start
            top = 1
        x = chain[top - 1]
        y = _nearest(
            pool, lists, pa, pb, known, cover, alive, sums, sizes, minid, x, t, slack, held,
            held_lo,
        )  # fmt: skip
        if y < 0:  # final: no pair below threshold, and none can arise
            state[0] = top - 1
            continue
        if top >= 2 and chain[top - 2] == y:
            state[0] = top - 2
            pool = _merge(
                pool, lists, pa, pb, known, cover, alive, seen, where, blk, at, prevented,
                sums, sizes, minid, parent, state, x, y, t, slack,
            )  # fmt: skip
            merges += 1
            continue
        # Under reducibility the chain never meets a cluster twice; where the graph lacks pairs
        # (an approximate search) it may, and the chain is cut back to that cluster.
        cut = -1
        for i in range(top - 2):
            if chain[i] == y:
                cut = i
                break
        if cut >= 0:
            state[0] = cut + 1
            continue
        chain[top] = y
        state[0] = top + 1
    return merges, pool


def chain_linkage(
    sums: np.ndarray,
    sizes: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    known: np.ndarray,
    cover: np.ndarray,
    threshold: float,
    blocked: tuple[np.ndarray, np.ndarray],
    slack: float,
    *,
    on_merges: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Average linkage of clusters given by sum vectors and sizes (both updated in place):
    (parent of each cluster, keys a x m + b of the cluster pairs a < b whose merge the
    cannot-link prevented, a cluster's id being its smallest member).

    Pairs (u, v): `known` the summed similarity of the face pairs known, `cover` their number
    (all of them, size u x size v, where the distance is exact); the four arrays become the
    pair table and are changed where they are int32 and float64 already. `blocked`: pairs of
    clusters never merged. `on_merges(count)` after each slice of merges.
    """
    m = sizes.size
    pa = np.asarray(u, np.int32)  # pair ids and cluster ids fit: tasks hold < 2**31 pairs
    pb = np.asarray(v, np.int32)
    known = np.asarray(known, np.float64)
    cover = np.asarray(cover, np.float64)
    alive = np.ones(pa.size, np.bool_)
    lists = np.zeros((m, 3), np.int64)
    pool, blk, at, prevented = init_state(
        sizes,
        pa,
        pb,
        known,
        cover,
        alive,
        np.asarray(blocked[0], np.int64),
        np.asarray(blocked[1], np.int64),
        lists,
    )
    minid = np.arange(m, dtype=np.int64)
    parent = np.arange(m, dtype=np.int64)
    chain = np.empty(m, np.int64)
    seen = np.zeros(m, np.int64)
    where = np.zeros(m, np.int64)
    state = np.array([0, 0, 0, int(lists[:, 2].sum())], np.int64)
    held = np.empty(max(1, pa.size), np.int32)  # a list holds each pair at most once
    held_lo = np.empty(max(1, pa.size), np.float64)
    while True:
        done, pool = run(
            pool, lists, pa, pb, known, cover, alive, blk, at, prevented, sums, sizes, minid,
            parent, chain, seen, where, state, float(threshold), float(slack), MERGES_PER_CALL,
            held, held_lo,
        )  # fmt: skip
        if on_merges is not None:
            on_merges(done)
        if done < MERGES_PER_CALL:
            break
    keys = np.fromiter(prevented.keys(), np.int64, len(prevented))
    return parent, keys
