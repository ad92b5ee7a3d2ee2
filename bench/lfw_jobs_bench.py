"""`facesets cluster` and `facesets refine` on all of LFW, through the real jobs and store.

All 13,233 photos are embedded into bench/out/lfw_faces.db with the embedded default (the
mini pack; incremental, so later runs reuse it). Each job then runs in a fresh subprocess, so
its time and peak resident memory are its own. Quality is measured on the labelled face of each
photo (the one nearest the centre) against the person folders: pairwise and BCubed
precision / recall / F of `cluster` (default threshold 0.55), and the purity of `refine`'s
facesets (default gates, 15 photos per faceset).

Baseline, in the same run and also in a fresh process each: the seed-style path, the faces'
embeddings read with sqlite3, dense average linkage with scikit-learn at the same threshold,
and the same quality gates and faceset size in plain numpy (no outlier pass, no merge, no
output files). Ratios are facesets' time over the baseline's.

Cannot-link: `cluster` and `refine` also run with the constraint off (`-free`); the bench
reports, for both, the pairwise F on the labelled faces (within 0.002 of each other), the
groups that hold two faces of one photo (none with the constraint) and the merges prevented.

Usage: python bench/lfw_jobs_bench.py [--shared ../shared] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FREE = "-free"  # job name suffix: the cannot-link constraint off
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO / "bench"))


def _worker(job: str, store_path: str, out: str) -> None:
    from facesets.clustering.jobs.cluster import cluster
    from facesets.clustering.jobs.refine import refine
    from facesets.clustering.store import FaceStore
    from facesets.contract.clustering import ClusterParams, RefineParams
    from facesets.contract.fields import LinkMode

    store = FaceStore(Path(store_path))
    started = time.perf_counter()
    cannot_link = not job.endswith(FREE)  # "cluster-free": the constraint turned off
    if job.startswith("cluster"):
        params = ClusterParams(link_mode=LinkMode.SYMLINK, cannot_link=cannot_link)
        outcome = cluster(store, Path(out), params)
    else:
        refine_params = RefineParams(link_mode=LinkMode.SYMLINK, cannot_link=cannot_link)
        outcome = refine(store, Path(out), refine_params)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"seconds": seconds, "peak_mib": peak_mib, "summary": outcome.summary}, default=str
        )
    )


def _baseline_worker(store_path: str) -> None:
    """Dense scikit-learn linkage and refine's gates in numpy, on the store's embeddings."""
    import sqlite3

    from sklearn.cluster import AgglomerativeClustering

    from facesets.contract import defaults

    started = time.perf_counter()
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT face_id, sha256, embedding, face_short, blur, det_score FROM faces "
            "WHERE embedding IS NOT NULL ORDER BY face_id"
        ).fetchall()
    emb = np.stack([np.frombuffer(r[2], "<f4") for r in rows])
    labels = AgglomerativeClustering(
        n_clusters=None,
        metric="cosine",
        linkage="average",
        distance_threshold=defaults.CLUSTER_THRESHOLD,
    ).fit_predict(emb)
    cluster_s = time.perf_counter() - started
    short, blur, det = (np.array([r[k] for r in rows]) for k in (3, 4, 5))
    good = (
        (short >= defaults.QUALITY_MIN_SHORT)
        & (blur >= defaults.QUALITY_MIN_BLUR)
        & (det >= defaults.QUALITY_MIN_DET_SCORE)
    )
    sha = np.array([r[1] for r in rows])
    facesets = {}
    for label in np.unique(labels[good]):
        members = np.flatnonzero(good & (labels == label))
        if np.unique(sha[members]).size >= defaults.REFINE_MIN_FACES:
            facesets[int(label)] = [int(rows[i][0]) for i in members]
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    face_ids = [int(r[0]) for r in rows]
    print(
        json.dumps(
            {
                "cluster_seconds": cluster_s,
                "refine_seconds": seconds,
                "peak_mib": peak_mib,
                "labels": dict(zip(face_ids, labels.tolist(), strict=True)),
                "facesets": facesets,
            }
        )
    )


def _run_job(job: str, store: Path, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", job, str(store), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _embed(lfw: Path, store: Path, shared: Path) -> float:
    from facesets.orchestrator.connect import ServiceOptions, Services
    from facesets.orchestrator.embed import embed

    args = argparse.Namespace(
        model_root=str(shared),
        model_pack="facepack-mini",
        providers="cpu",
        inference=None,
        clustering=None,
        token_file=None,
        tls_ca=None,
    )
    started = time.perf_counter()
    with Services(ServiceOptions.from_args(args), [lfw, store]) as services:
        embed(services, lfw, store, show_progress=False)
    return time.perf_counter() - started


def main(shared: Path, quick: bool) -> dict:
    from jobs_bench import _labelled_faces

    from facesets.clustering import metrics
    from facesets.clustering.store import FaceStore

    lfw = shared / "data" / "lfw"
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = lfw
        if quick:  # the first 300 people, as a smoke run
            source = Path(tmp) / "lfw"
            for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:300]:
                (source / person.name).mkdir(parents=True)
                for photo in person.glob("*.jpg"):
                    (source / person.name / photo.name).symlink_to(photo)
        store_path = OUT / ("lfw_faces_quick.db" if quick else "lfw_faces.db")
        embed_s = _embed(source, store_path, shared)
        results = {"embed_s_incremental": round(embed_s, 1)}
        for job in ("cluster", "refine", "cluster" + FREE, "refine" + FREE):
            results[job] = _run_job(job, store_path, Path(tmp) / job)
        done = subprocess.run(
            [sys.executable, __file__, "--baseline", str(store_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        baseline = json.loads(done.stdout.strip().splitlines()[-1])
        store = FaceStore(store_path)
        person_of = {}
        for image in store.images():
            for path in (image.path, *image.aliases):
                person_of[image.sha256] = Path(path).parent.name
        labelled = _labelled_faces(store)
        store.close()

        raw = json.loads((Path(tmp) / "cluster" / "manifest.json").read_text())
        folder_of = {f["face_id"]: f["folder"] for f in raw["faces"]}
        truth = np.array([person_of[sha] for sha in labelled])
        predicted = np.array(
            [
                int(folder_of[face].split("_")[1])
                if folder_of.get(face, "").startswith("person_")
                else -1 - i  # each singleton its own cluster
                for i, face in enumerate(labelled.values())
            ]
        )
        p, r, f = metrics.pairwise_prf(truth, predicted)
        bp, br, bf = metrics.bcubed_prf(truth, predicted)
        refined = json.loads((Path(tmp) / "refine" / "refine_manifest.json").read_text())
        in_set = {
            face: n for e in refined["facesets"] for face in e["face_ids"] for n in [e["number"]]
        }
        pairs = [(person_of[sha], in_set[face]) for sha, face in labelled.items() if face in in_set]
        purity = metrics.purity(np.array([t for t, _ in pairs]), np.array([s for _, s in pairs]))
        results["cannot_link"] = _cannot_link_report(Path(tmp), labelled, truth, results)
    base_labels = {int(k): v for k, v in baseline.pop("labels").items()}
    base_pred = np.array(
        [base_labels.get(face, -1 - i) for i, face in enumerate(labelled.values())]
    )
    base_prf = metrics.pairwise_prf(truth, base_pred)
    base_in = {f: int(n) for n, ids in baseline.pop("facesets").items() for f in ids}
    base_pairs = [(person_of[sha], base_in[f]) for sha, f in labelled.items() if f in base_in]
    results["baseline"] = {
        "method": "sklearn dense average linkage + refine's gates in numpy",
        "cluster_seconds": round(baseline["cluster_seconds"], 2),
        "refine_seconds": round(baseline["refine_seconds"], 2),
        "peak_mib": round(baseline["peak_mib"]),
        "pairwise": [round(v, 4) for v in base_prf],
        "refine_facesets": len(set(base_in.values())),
        "refine_purity": round(
            metrics.purity(
                np.array([t for t, _ in base_pairs]), np.array([s for _, s in base_pairs])
            ),
            4,
        )
        if base_pairs
        else None,
    }
    results["cluster_time_vs_baseline"] = round(
        results["cluster"]["seconds"] / baseline["cluster_seconds"], 3
    )
    results["refine_time_vs_baseline"] = round(
        results["refine"]["seconds"] / baseline["refine_seconds"], 3
    )
    results["quality"] = {
        "photos": len(labelled),
        "pairwise": [round(p, 4), round(r, 4), round(f, 4)],
        "bcubed": [round(bp, 4), round(br, 4), round(bf, 4)],
        "refine_facesets": len(refined["facesets"]),
        "refine_labelled_faces": len(pairs),
        "refine_purity": round(purity, 4),
    }
    q = results["quality"]
    print(
        f"LFW {q['photos']} labelled faces: cluster pairwise P/R/F {q['pairwise']}, "
        f"BCubed P/R/F {q['bcubed']}; "
        f"{results['cluster']['seconds']:.1f} s, peak {results['cluster']['peak_mib']:.0f} MiB"
    )
    print(
        f"refine: {q['refine_facesets']} facesets, purity {q['refine_purity']} over "
        f"{q['refine_labelled_faces']} labelled faces; {results['refine']['seconds']:.1f} s, "
        f"peak {results['refine']['peak_mib']:.0f} MiB"
    )
    b = results["baseline"]
    print(
        f"baseline ({b['method']}): cluster {b['cluster_seconds']} s, refine "
        f"{b['refine_seconds']} s, peak {b['peak_mib']} MiB, pairwise P/R/F {b['pairwise']}, "
        f"{b['refine_facesets']} facesets, purity {b['refine_purity']}; facesets' time / "
        f"baseline: cluster {results['cluster_time_vs_baseline']}x, refine "
        f"{results['refine_time_vs_baseline']}x"
    )
    c = results["cannot_link"]
    for job in ("cluster", "refine"):
        print(
            f"cannot-link {job}: pairwise F {c[job]['pairwise_f']} vs {c[job]['pairwise_f_free']} "
            f"without (delta {c[job]['f_delta']:+.4f}, within 0.002: {c[job]['f_within_0_002']}); "
            f"groups holding two faces of one photo {c[job]['groups_sharing_a_photo']} "
            f"(without: {c[job]['groups_sharing_a_photo_free']}); merges prevented "
            f"{c[job]['merges_prevented']}"
            + (f"; look-alike pairs {c[job]['lookalikes']}" if job == "refine" else "")
        )
    return results


def _groups(manifest: dict, job: str) -> dict[int, int]:
    """Face id -> group number: cluster's persons, refine's facesets."""
    if job == "cluster":
        return {f: int(p["number"]) for p in manifest["persons"] for f in p["face_ids"]}
    return {f: int(e["number"]) for e in manifest["facesets"] for f in e["face_ids"]}


def _cannot_link_report(
    tmp: Path, labelled: dict[str, int], truth: np.ndarray, results: dict
) -> dict:
    """Per job, with and without the constraint: pairwise F on each photo's labelled face
    (faces in no group count as singletons), groups holding two faces of one photo, and the
    merges the constraint prevented."""
    from facesets.clustering import metrics

    names = {"cluster": "manifest.json", "refine": "refine_manifest.json"}
    out: dict[str, dict] = {}
    for job, name in names.items():
        row: dict = {}
        for suffix in ("", FREE):
            manifest = json.loads((tmp / (job + suffix) / name).read_text())
            group = _groups(manifest, job)
            predicted = np.array(
                [group.get(face, -1 - i) for i, face in enumerate(labelled.values())]
            )
            f = metrics.pairwise_prf(truth, predicted)[2]
            sha_of: dict[int, str] = {}
            if job == "cluster":
                sha_of = {int(x["face_id"]): x["sha256"] for x in manifest["faces"]}
                members = [p["face_ids"] for p in manifest["persons"]]
                shared = sum(len({sha_of[i] for i in ids}) < len(ids) for ids in members)
            else:
                shared = sum(len(e["photos"]) < len(e["face_ids"]) for e in manifest["facesets"])
            key = "" if not suffix else "_free"
            row["pairwise_f" + key] = round(f, 4)
            row["groups_sharing_a_photo" + key] = int(shared)
            if not suffix:
                row["merges_prevented"] = manifest["cannot_link"]["merges_prevented"]
                if job == "refine":
                    row["lookalikes"] = len(manifest["lookalikes"])
        row["f_delta"] = round(row["pairwise_f"] - row["pairwise_f_free"], 4)
        row["f_within_0_002"] = abs(row["pairwise_f"] - row["pairwise_f_free"]) <= 0.002
        row["seconds"] = round(results[job]["seconds"], 2)
        row["seconds_free"] = round(results[job + FREE]["seconds"], 2)
        out[job] = row
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline":
        _baseline_worker(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:5])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    main(options.shared.resolve(), options.quick)
