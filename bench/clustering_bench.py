"""Clustering benchmark: quality on LFW and scale on synthetic stores.

(a) LFW: the embedding of each photo's labelled face (the face nearest the image centre, mini
pack), clustered at the default threshold by the component-wise method (exact neighbour search),
through the IVF index (forced: LFW is below ann_min_faces) and by dense average linkage;
pairwise and BCubed precision / recall / F against the true identities, time and peak memory of
each. (b) Synthetic 512-d stores: time and peak memory of the component-wise method next to the
IVF index and dense average linkage, each only run where it fits; the full run adds a
million-face store clustered through the IVF index (recall measured on sampled queries) and
`extend` of 10,000 new faces into it, timed against the full clustering. Every synthetic size
runs for two shapes of store (`GENERATORS`): "library" (Zipf identity sizes, lookalike groups,
blurred faces sharing a direction) and "siblings" (a few large identities, sibling pairs
sharing most of their centre, singletons), so that neither the index nor the linkage is tuned
to one distribution; the synthetic stores' IVF runs print their figures against the
million-face targets, LFW's its ARI against the exact search's clusters (target 0.999).

Each measured run happens in a fresh subprocess so its peak resident memory is its own.
Embeddings are cached in bench/out/lfw_embeddings.npz (rows are reused per file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
CACHE = OUT / "lfw_embeddings.npz"
MODEL_PACK = "facepack-mini"
DET_SIZE = 640
CHECKPOINT_EVERY = 500


# --- LFW embeddings --------------------------------------------------------------------------


def lfw_files(lfw: Path, limit: int | None = None) -> list[str]:
    """Photo paths relative to the LFW root, sorted; the first `limit` if given."""
    files = sorted(str(p.relative_to(lfw)) for p in lfw.glob("*/*.jpg"))
    return files[:limit] if limit is not None else files


def _cache_key(model_root: Path) -> str:
    return f"{MODEL_PACK}|det{DET_SIZE}|{model_root.resolve()}"


def _load_cache(key: str) -> dict[str, tuple[np.ndarray, bool]]:
    if not CACHE.is_file():
        return {}
    with np.load(CACHE, allow_pickle=False) as data:
        if str(data["key"]) != key:
            return {}
        return {
            str(f): (e, bool(ok))
            for f, e, ok in zip(data["files"], data["emb"], data["ok"], strict=True)
        }


def _save_cache(key: str, rows: dict[str, tuple[np.ndarray, bool]]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    files = sorted(rows)
    emb = np.stack([rows[f][0] for f in files]).astype(np.float32)
    ok = np.array([rows[f][1] for f in files], dtype=bool)
    fd, tmp = tempfile.mkstemp(dir=OUT, suffix=".npz")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(key), files=np.array(files), emb=emb, ok=ok)
        os.replace(tmp, CACHE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def labelled_face_embedding(app: Any, image: np.ndarray) -> np.ndarray | None:
    """The normalised embedding of the face whose box centre is nearest the image centre."""
    faces = app.get(image)
    if not faces:
        return None
    h, w = image.shape[:2]
    centre = np.array([w / 2.0, h / 2.0])

    def off_centre(face: Any) -> float:
        x1, y1, x2, y2 = face.bbox[:4]
        return float(np.hypot((x1 + x2) / 2 - centre[0], (y1 + y2) / 2 - centre[1]))

    best = min(faces, key=off_centre)
    emb = np.asarray(best.normed_embedding, dtype=np.float32)
    return emb


def lfw_embeddings(
    shared: Path, files: list[str], *, verbose: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, found) for the given LFW files; computes and caches the missing ones."""
    import cv2
    from insightface.app import FaceAnalysis

    lfw = shared / "data" / "lfw"
    key = _cache_key(shared)
    rows = _load_cache(key)
    missing = [f for f in files if f not in rows]
    if missing:
        import onnxruntime

        # One thread per model call: the default pool spins its idle threads (twice the CPU).
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        app = FaceAnalysis(
            name=MODEL_PACK,
            root=str(shared),
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )
        app.prepare(ctx_id=-1, det_size=(DET_SIZE, DET_SIZE))
        start = time.perf_counter()
        dim = None
        pending: list[tuple[str, np.ndarray | None]] = []
        for i, name in enumerate(missing, 1):
            image = cv2.imread(str(lfw / name))
            emb = labelled_face_embedding(app, image) if image is not None else None
            if emb is not None:
                dim = emb.shape[0]
            pending.append((name, emb))
            if dim is not None and (i % CHECKPOINT_EVERY == 0 or i == len(missing)):
                for f, e in pending:
                    rows[f] = (e, True) if e is not None else (np.zeros(dim, np.float32), False)
                pending.clear()
                _save_cache(key, rows)
                if verbose:
                    rate = i / (time.perf_counter() - start)
                    print(f"  embedded {i}/{len(missing)} photos ({rate:.1f}/s)", flush=True)
        if pending:  # no face anywhere in the batch: nothing tells the dimension
            raise RuntimeError("no face found in any of the requested photos")
    emb = np.stack([rows[f][0] for f in files])
    found = np.array([rows[f][1] for f in files], dtype=bool)
    return emb, found


# --- synthetic stores ------------------------------------------------------------------------


def synthetic_faces(
    n: int,
    dim: int = 512,
    *,
    seed: int = 0,
    noise_fraction: float = 0.10,
    poor_fraction: float = 0.05,
    zipf: float = 2.0,
    lookalike: float = 0.9,
    group: int = 8,
    poor_pull: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(unit embeddings float32, identity labels) shaped like a real photo library.

    Identity sizes are long-tailed (Zipf, capped at 1% of the store); identities come in
    groups of lookalikes sharing part of their centre; per-face noise puts same-identity
    pairs near cosine distance 0.4 and different identities near 1.0. A fraction of faces
    are poor (blur, profile): they share a common direction, so they sit close to poor faces
    of other people and chain identities into large components, as real libraries do. The
    rest of the noise is unrelated single faces.
    """
    rng = np.random.default_rng(seed)
    n_noise = int(n * noise_fraction)
    cap = max(10, n // 100)
    sizes: list[int] = []
    left = n - n_noise
    while left > 0:
        size = min(left, int(rng.zipf(zipf)), cap)
        sizes.append(size)
        left -= size
    k = len(sizes)
    grp = rng.integers(0, max(1, k // group), k)
    base = rng.standard_normal((k, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    shared = rng.standard_normal((int(grp.max()) + 1, dim)).astype(np.float32)
    shared /= np.linalg.norm(shared, axis=1, keepdims=True)
    weight = lookalike * rng.random(k).astype(np.float32)
    centres = base * np.sqrt(1 - weight**2)[:, None] + shared[grp] * weight[:, None]
    poor_dir = rng.standard_normal(dim).astype(np.float32)
    poor_dir /= np.linalg.norm(poor_dir)
    ident = np.repeat(np.arange(k), sizes)
    sigma = rng.uniform(0.6, 1.0, ident.size).astype(np.float32)
    poor = (rng.random(ident.size) < poor_fraction).astype(np.float32) * poor_pull
    emb = np.empty((n, dim), np.float32)
    for s in range(0, ident.size, 8192):
        sl = slice(s, min(ident.size, s + 8192))
        noise = rng.standard_normal((sl.stop - sl.start, dim)).astype(np.float32)
        noise *= (sigma[sl] / np.sqrt(dim))[:, None]
        emb[sl] = centres[ident[sl]] + noise + poor[sl, None] * poor_dir
    emb[ident.size :] = rng.standard_normal((n_noise, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.concatenate([ident, k + np.arange(n_noise)])
    perm = rng.permutation(n)
    return emb[perm], labels[perm]


def synthetic_siblings(
    n: int,
    dim: int = 512,
    *,
    seed: int = 0,
    large_fraction: float = 0.20,
    large_faces: int = 10_000,
    singleton_fraction: float = 0.40,
    sibling_mean: float = 8.0,
    shared: tuple[float, float] = (0.6, 0.8),
) -> tuple[np.ndarray, np.ndarray]:
    """(unit embeddings float32, identity labels) of another shape than `synthetic_faces`.

    A few large identities hold `large_fraction` of the faces (about `large_faces` each, at
    least four of them: thousands of faces at a million); most other identities come as pairs
    of siblings whose centres share a weight in `shared` of one direction (centre similarity
    0.36 to 0.64: many of their faces lie within the threshold of the sibling's, their
    averages do not), with geometric sizes of mean `sibling_mean`; `singleton_fraction` of the
    faces are single faces of people seen once. No common direction of poor faces, so the
    large components are the large identities themselves rather than chains.
    """
    rng = np.random.default_rng(seed)
    n_single = int(n * singleton_fraction)
    n_large = int(n * large_fraction)
    n_large_ids = max(4, round(n_large / large_faces))
    large_sizes = np.full(n_large_ids, n_large // n_large_ids)
    large_sizes[: n_large - int(large_sizes.sum())] += 1
    sizes: list[int] = [int(s) for s in large_sizes]
    left = n - n_single - n_large
    sibling_of: list[int] = list(range(n_large_ids))  # a large identity is its own family
    family = n_large_ids
    while left > 0:
        for _ in range(2):  # two siblings of one family
            size = min(left, int(rng.geometric(1.0 / sibling_mean)) + 1)
            if size <= 0:
                break
            sizes.append(size)
            sibling_of.append(family)
            left -= size
        family += 1
    k = len(sizes)
    fam = np.asarray(sibling_of)
    base = rng.standard_normal((k, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    common = rng.standard_normal((family, dim)).astype(np.float32)
    common /= np.linalg.norm(common, axis=1, keepdims=True)
    weight = rng.uniform(*shared, k).astype(np.float32)
    weight[:n_large_ids] = 0.0  # large identities share nothing
    centres = base * np.sqrt(1 - weight**2)[:, None] + common[fam] * weight[:, None]
    ident = np.repeat(np.arange(k), sizes)
    sigma = rng.uniform(0.6, 1.0, ident.size).astype(np.float32)
    emb = np.empty((n, dim), np.float32)
    for s in range(0, ident.size, 8192):
        sl = slice(s, min(ident.size, s + 8192))
        noise = rng.standard_normal((sl.stop - sl.start, dim)).astype(np.float32)
        noise *= (sigma[sl] / np.sqrt(dim))[:, None]
        emb[sl] = centres[ident[sl]] + noise
    emb[ident.size :] = rng.standard_normal((n - ident.size, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.concatenate([ident, k + np.arange(n - ident.size)])
    perm = rng.permutation(n)
    return emb[perm], labels[perm]


GENERATORS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "library": synthetic_faces,
    "siblings": synthetic_siblings,
}


# --- measured runs, each in a fresh process --------------------------------------------------

THRESHOLD = 0.55
DENSE_LIMIT_GIB = 8  # address-space limit of a dense run: a larger matrix fails fast
METHODS = ("components", "sparse", "dense", "ivf", "extend")
EXTEND_NEW = 10_000  # faces folded into a clustered store by the extend measurement
MILLION = 1_000_000


def dense_need_gib(n: int) -> float:
    """Memory of scipy's dense average linkage: the condensed float64 distances, twice."""
    return 2 * n * (n - 1) / 2 * 8 / 2**30


def _worker(
    method: str, data: Path, threshold: float, labels_out: Path, labels_in: Path | None = None
) -> dict[str, Any]:
    """Runs in the child: load the embeddings, cluster, report time and peak memory."""
    from facesets.shared.logs import configure

    configure("warning")
    emb = _load_npy(data)
    loaded_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if method == "extend":
        assert labels_in is not None
        out = _extend_worker(emb, np.load(labels_in), threshold)
        out["loaded_mib"] = loaded_mib
        np.save(labels_out, np.zeros(0, np.int64))
        return out
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if method == "dense":
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=threshold
        )
        labels = model.fit_predict(emb)
    else:
        from facesets.clustering.linkage import cluster_average_linkage
        from facesets.clustering.neighbours import SearchParams

        # "components" and "sparse" search exactly (faiss's flat index); "ivf" always the index
        search = SearchParams(backend="ivf" if method == "ivf" else "flat")
        kwargs = {"dense_max": 2} if method == "sparse" else {}
        result = cluster_average_linkage(emb, threshold, search=search, **kwargs)
        labels = result.labels
        extra = {
            "edges": result.n_edges,
            "largest_component": result.largest_component,
            "methods": result.method_counts(),
            "stages_s": {k: round(v, 2) for k, v in result.seconds.items()},
        }
        if result.search is not None:
            extra["search"] = result.search.as_json()
            extra["search_s"] = {k: round(v, 2) for k, v in result.search.seconds.items()}
    seconds = time.perf_counter() - start
    np.save(labels_out, np.asarray(labels, np.int64))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime  # the whole process, loading included
    return {"seconds": seconds, "cpu_s": cpu, "peak_mib": peak, "loaded_mib": loaded_mib, **extra}


def _extend_worker(emb: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """`extend`'s work for the last EXTEND_NEW faces against the clusters of the others.

    The store's persons are the clusters (two faces or more) of its first n - EXTEND_NEW faces
    in the full clustering; each new face joins the nearest person centroid within the
    threshold through the faiss index, the rest are clustered among themselves. The same
    nearest-centroid decisions are then made by the exact blocked products, to compare.
    """
    from facesets.clustering import linkage
    from facesets.clustering.neighbours import SearchParams

    old = emb.shape[0] - EXTEND_NEW
    held = labels[:old].copy()
    counts = np.bincount(held)
    held[counts[held] < 2] = -1  # singletons are no persons
    start = time.perf_counter()
    _, cents = linkage._centroid_matrix(emb[:old], held)
    rows, _ = linkage.nearest_centroid(emb[old:], cents, threshold)
    rest = np.flatnonzero(rows < 0)
    fresh = linkage.cluster_average_linkage(emb[old:][rest], threshold)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exact, _ = linkage.nearest_centroid(emb[old:], cents, threshold, SearchParams("exact"))
    return {
        "seconds": seconds,
        "peak_mib": peak,
        "persons": int(cents.shape[0]),
        "new_faces": EXTEND_NEW,
        "joined": int((rows >= 0).sum()),
        "new_clusters": int(fresh.n_clusters),
        "nearest_backend": SearchParams().chosen(cents.shape[0]),
        "same_as_exact": bool(np.array_equal(rows, exact)),
        "disagree": int((rows != exact).sum()),
    }


def _load_npy(path: Path) -> np.ndarray:
    """Read a .npy straight into its array (np.load holds a second copy while reading)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(fh)
        arr = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        fh.readinto(memoryview(arr.reshape(-1)).cast("B"))
    return arr


def _limit_memory(gib: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (gib * 2**30, gib * 2**30))


def measure(
    method: str, data: Path, threshold: float = THRESHOLD, labels_in: Path | None = None
) -> dict[str, Any]:
    """Cluster the embeddings saved at `data` in a fresh process; labels come back too."""
    labels_out = data.with_suffix(f".{method}.labels.npy")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--data", str(data)]
    cmd += ["--threshold", str(threshold), "--labels-out", str(labels_out)]
    if labels_in is not None:
        cmd += ["--labels-in", str(labels_in)]
    limit = (lambda: _limit_memory(DENSE_LIMIT_GIB)) if method == "dense" else None
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit, check=False)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"method": method, "failed": reason[-200:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["method"] = method
    out["labels"] = np.load(labels_out)
    labels_out.unlink()
    return out


def best_of(method: str, data: Path, repeats: int) -> dict[str, Any]:
    """The fastest of `repeats` runs (the machine is shared), with the highest peak seen."""
    runs = [measure(method, data) for _ in range(repeats)]
    done = [r for r in runs if "failed" not in r]
    if not done:
        return runs[-1]
    best = min(done, key=lambda r: r["seconds"])
    best["peak_mib"] = max(r["peak_mib"] for r in done)
    best["runs"] = len(done)
    return best


# --- the benchmark ---------------------------------------------------------------------------


def _quality(truth: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from facesets.clustering.metrics import bcubed_prf, pairwise_prf, purity

    pp, pr, pf = pairwise_prf(truth, labels)
    bp, br, bf = bcubed_prf(truth, labels)
    return {
        "pairwise_p": pp,
        "pairwise_r": pr,
        "pairwise_f": pf,
        "bcubed_p": bp,
        "bcubed_r": br,
        "bcubed_f": bf,
        "purity": purity(truth, labels),
        "clusters": int(np.unique(labels).size),
    }


def _compare(runs: list[dict[str, Any]], truth: np.ndarray) -> None:
    """Quality against the truth and agreement with the dense reference, in place."""
    from sklearn.metrics import adjusted_rand_score

    from facesets.clustering.linkage import canonical_labels

    ref = next((r for r in runs if r["method"] == "dense" and "labels" in r), None)
    exact = next((r for r in runs if r["method"] == "components" and "labels" in r), None)
    for run in runs:
        labels = run.get("labels")
        if labels is None:
            continue
        run.update(_quality(truth, labels))
        if exact is not None and run["method"] == "ivf":
            run["ari_vs_exact"] = adjusted_rand_score(exact["labels"], labels)
            run["pair_f_diff_vs_exact"] = (
                run["pairwise_f"] - _quality(truth, exact["labels"])["pairwise_f"]
            )
        if ref is not None and run is not ref:
            run["ari_vs_dense"] = adjusted_rand_score(ref["labels"], labels)
            run["identical_to_dense"] = bool(
                np.array_equal(canonical_labels(ref["labels"])[0], canonical_labels(labels)[0])
            )
    for run in runs:
        run.pop("labels", None)


def _save_array(path: Path, arr: np.ndarray) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=OUT, suffix=".npy")
    os.close(fd)
    np.save(tmp, arr)
    os.replace(tmp, path)
    return path


def bench_lfw(shared: Path, limit: int | None, repeats: int = 1) -> dict[str, Any]:
    lfw = shared / "data" / "lfw"
    files = lfw_files(lfw, limit)
    print(f"LFW: {len(files)} photos (embeddings cached in {CACHE.relative_to(REPO)})", flush=True)
    emb, found = lfw_embeddings(shared, files)
    people = np.array([f.split("/")[0] for f in files])[found]
    emb = emb[found]
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:12]
    data = _save_array(OUT / f"lfw_{digest}.npy", np.ascontiguousarray(emb, np.float32))
    runs = [best_of(m, data, repeats) for m in ("components", "sparse", "ivf", "dense")]
    _compare(runs, people)
    return {
        "photos": len(files),
        "faces": int(emb.shape[0]),
        "no_face": int((~found).sum()),
        "people": int(np.unique(people).size),
        "runs": runs,
    }


def bench_synthetic(
    n: int,
    seed: int = 3,
    *,
    dense: bool = True,
    exact: bool = True,
    ivf: bool = False,
    generator: str = "library",
) -> dict[str, Any]:
    stem = "synthetic" if generator == "library" else generator  # the library store's old name
    data = OUT / f"{stem}_{n}_{seed}.npy"
    truth_path = OUT / f"{stem}_{n}_{seed}.truth.npy"
    if data.is_file() and truth_path.is_file():
        truth = np.load(truth_path)
    else:
        emb, truth = GENERATORS[generator](n, seed=seed)
        _save_array(data, emb)
        _save_array(truth_path, truth)
        del emb
    print(f"synthetic ({generator}): {n} faces x 512", flush=True)
    runs = [measure("components", data)] if exact else []
    if ivf:
        runs.append(measure("ivf", data))
    if dense:
        ref = measure("dense", data)
        if "failed" in ref:
            ref["failed"] = (
                f"{ref['failed']} under this benchmark's own {DENSE_LIMIT_GIB} GiB "
                f"address-space cap (RLIMIT_AS; dense needs ~{dense_need_gib(n):.0f} GiB)"
            )
        ref["dense_needs_gib"] = round(dense_need_gib(n), 1)
        runs.append(ref)
    else:
        runs.append({"method": "dense", "failed": f"not run (needs ~{dense_need_gib(n):.0f} GiB)"})
    extend = None
    done = {r["method"]: r for r in runs if "labels" in r}
    clustered = done.get("ivf") or done.get("components")  # extend is timed against it
    if clustered is not None and n > EXTEND_NEW * 2:
        labels_in = _save_array(data.with_suffix(".clustered.labels.npy"), clustered["labels"])
        extend = measure("extend", data, labels_in=labels_in)
        if "seconds" in extend:
            extend["fraction_of_cluster"] = extend["seconds"] / clustered["seconds"]
        labels_in.unlink()
    _compare(runs, truth)
    return {
        "generator": generator,
        "faces": n,
        "identities": int(np.unique(truth).size),
        "runs": runs,
        "extend": extend,
    }


def _fmt(run: dict[str, Any], key: str, spec: str) -> str:
    value = run.get(key)
    width = int(spec.split(".")[0].rstrip("dfs") or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def print_table(title: str, runs: list[dict[str, Any]], *, lfw: bool = False) -> None:
    """The runs' figures; an IVF run's against the million-face targets on a synthetic store,
    and on LFW (whose F the model bounds, not the index) against the exact search's clusters."""
    print(f"\n{title}")
    head = f"{'method':<11}{'time s':>8}{'base MiB':>10}{'peak MiB':>10}"
    head += f"{'pair P':>8}{'pair R':>8}{'pair F':>8}{'B3 P':>8}{'B3 R':>8}{'B3 F':>8}"
    head += f"{'clusters':>9}{'ARI/dense':>10}"
    print(head)
    for run in runs:
        if "failed" in run:
            print(f"{run['method']:<11}  not completed: {run['failed']}")
            continue
        print(
            f"{run['method']:<11}{_fmt(run, 'seconds', '8.2f')}{_fmt(run, 'loaded_mib', '10.0f')}"
            f"{_fmt(run, 'peak_mib', '10.0f')}"
            f"{_fmt(run, 'pairwise_p', '8.4f')}{_fmt(run, 'pairwise_r', '8.4f')}"
            f"{_fmt(run, 'pairwise_f', '8.4f')}{_fmt(run, 'bcubed_p', '8.4f')}"
            f"{_fmt(run, 'bcubed_r', '8.4f')}{_fmt(run, 'bcubed_f', '8.4f')}"
            f"{_fmt(run, 'clusters', '9d')}{_fmt(run, 'ari_vs_dense', '10.4f')}"
        )
    for run in runs:
        if "edges" in run:
            print(
                f"  {run['method']}: {run['edges']} candidate pairs, largest component "
                f"{run['largest_component']}, methods {run['methods']}, stages {run['stages_s']}"
            )
        if run.get("method") == "ivf" and "search" in run:
            search = run["search"]
            print(
                f"  ivf: nlist {search['nlist']}, nprobe {search['nprobe']}, k {search['k']}, "
                f"{search['dense_faces']} dense faces searched again over "
                f"{search['dense_nprobe']} lists with {search.get('room_faces', 0)} faces with "
                f"room, {search.get('hop_faces', 0)} faces with room "
                f"gaining {search.get('hop_found', 0)} neighbours of neighbours, recall "
                f"{search['recall']} (95% interval {search.get('recall_low')} to "
                f"{search.get('recall_high')}; graph {search.get('graph_recall')}) on "
                f"{search['recall_queries']} sampled queries, {search['completed_merges']} "
                f"merges completing truncated clusters, search stages {run['search_s']}"
            )
            if not lfw:
                print_targets(run)
            if "ari_vs_exact" in run:
                ari = run["ari_vs_exact"]
                target = (
                    f" (target >= {TARGET_LFW_ARI}: {'met' if ari >= TARGET_LFW_ARI else 'MISSED'})"
                )
                print(
                    f"  ivf against the exact search: ARI {ari:.4f}{target if lfw else ''}, "
                    f"pairwise F difference {run['pair_f_diff_vs_exact']:+.4f}"
                )


# Targets of the million-face run (issue: quality at a million faces).
TARGET_RECALL = 0.99
TARGET_F = 0.99
TARGET_SECONDS = 360
TARGET_PEAK_MIB = 6 * 1024
# ... and of LFW forced through the index: the exact search's clusters.
TARGET_LFW_ARI = 0.999


def print_targets(run: dict[str, Any]) -> None:
    """One line: the IVF run's recall, F against the truth, time and peak against the targets."""
    recall = run["search"].get("recall") or 0.0
    f = run.get("pairwise_f", 0.0)
    cpu = run.get("cpu_s", 0.0)  # on a shared machine the wall time says little
    low = run["search"].get("recall_low")
    margin = "" if low is None else f" (95% interval from {low:.4f})"
    checks = {
        f"recall {recall:.4f}{margin} >= {TARGET_RECALL}": recall >= TARGET_RECALL,
        f"pairwise F {f:.4f} >= {TARGET_F}": f >= TARGET_F,
        f"time {run['seconds']:.0f} s ({cpu:.0f} s of CPU) < {TARGET_SECONDS} s": run["seconds"]
        < TARGET_SECONDS,
        f"peak {run['peak_mib']:.0f} MiB < {TARGET_PEAK_MIB} MiB": run["peak_mib"]
        < TARGET_PEAK_MIB,
    }
    print("  targets: " + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in checks.items()))
    if low is not None and recall >= TARGET_RECALL > low:
        print(
            f"  recall: met on this sample only; its 95% interval reaches below {TARGET_RECALL} "
            "(FACESETS_NEIGHBOURS__ANN_RECALL_QUERIES samples more faces)"
        )


def print_extend(extend: dict[str, Any] | None) -> None:
    if not extend:
        return
    if "failed" in extend:
        print(f"  extend: not completed: {extend['failed']}")
        return
    print(
        f"  extend {extend['new_faces']} new faces into {extend['persons']} persons "
        f"({extend['nearest_backend']} index): {extend['seconds']:.2f} s, "
        f"{extend.get('fraction_of_cluster', float('nan')):.1%} of the full clustering, "
        f"peak {extend['peak_mib']:.0f} MiB; {extend['joined']} joined a person; "
        f"same as exact nearest-centroid: {extend['same_as_exact']}"
    )


def main(shared: Path, quick: bool) -> dict[str, Any]:
    """Quality on LFW and scale on synthetic stores; prints a table and returns the figures."""
    lfw_limit = 2000 if quick else None
    # Dense runs everywhere except the larger quick size; where it does not fit the address
    # space limit it fails at once.
    # (faces, dense reference, exact search, IVF index); dense fails at once where it does not
    # fit the address space limit; the exact search is left out where it takes hours.
    sizes = (
        ((5_000, True, True, True), (20_000, False, True, True))
        if quick
        else (
            (20_000, True, True, True),
            (50_000, True, True, True),
            (200_000, True, True, True),
            (MILLION, False, False, True),
        )
    )
    results: dict[str, Any] = {"threshold": THRESHOLD, "quick": quick}
    lfw = bench_lfw(shared, lfw_limit, repeats=1 if quick else 3)
    results["lfw"] = lfw
    print_table(
        f"LFW, {lfw['faces']} labelled faces of {lfw['people']} people "
        f"({lfw['no_face']} photos without a face), threshold {THRESHOLD}",
        lfw["runs"],
        lfw=True,
    )
    synthetic = []
    for generator in GENERATORS:
        for n, with_dense, with_exact, with_ivf in sizes:
            entry = bench_synthetic(
                n, dense=with_dense, exact=with_exact, ivf=with_ivf, generator=generator
            )
            synthetic.append(entry)
            print_table(
                f"synthetic ({generator}), {n} faces of {entry['identities']} identities (dense "
                f"limited to {DENSE_LIMIT_GIB} GiB of address space; it needs "
                f"~{dense_need_gib(n):.1f} GiB)",
                entry["runs"],
            )
            print_extend(entry["extend"])
    results["synthetic"] = synthetic
    return results


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--labels-in", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help="one synthetic store of this many faces only")
    parser.add_argument(
        "--lfw",
        action="store_true",
        help="LFW only: exact, sparse, IVF forced and dense on every labelled face, best of 3",
    )
    parser.add_argument(
        "--generator",
        choices=(*GENERATORS, "both"),
        default="both",
        help="with --size: the synthetic store's shape (library: Zipf identities, lookalike "
        "groups, blurred faces; siblings: a few large identities, sibling pairs, singletons)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = _parse()
    if args.worker:
        print(
            json.dumps(
                _worker(args.worker, args.data, args.threshold, args.labels_out, args.labels_in)
            )
        )
        sys.exit(0)
    if args.lfw:
        lfw = bench_lfw(args.shared.resolve(), None, repeats=3)
        print_table(
            f"LFW, {lfw['faces']} labelled faces of {lfw['people']} people "
            f"({lfw['no_face']} photos without a face), threshold {THRESHOLD}",
            lfw["runs"],
            lfw=True,
        )
        if args.json:
            args.json.write_text(json.dumps(lfw, indent=2, default=str))
        sys.exit(0)
    if args.size:
        big = args.size >= MILLION
        entries = []
        for generator in GENERATORS if args.generator == "both" else (args.generator,):
            entry = bench_synthetic(
                args.size, dense=False, exact=not big, ivf=True, generator=generator
            )
            print_table(
                f"synthetic ({generator}), {args.size} faces of {entry['identities']} identities",
                entry["runs"],
            )
            print_extend(entry["extend"])
            entries.append(entry)
        if args.json:
            args.json.write_text(json.dumps(entries, indent=2, default=str))
        sys.exit(0)
    figures = main(args.shared.resolve(), args.quick)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
