"""Clustering jobs profile: what the jobs cost around the clustering itself, and what they yield.

A profile, not a benchmark against another tool: facesets' steps are timed against facesets'
own linkage (for a baseline from outside, see lfw_jobs_bench.py and clustering_bench.py).

A real store is filled with LFW photos (people with at least 8 photos, 10 each; the mini pack at a
320 px detector input, which sees LFW's 250 px photos whole); the last photo of each person is
held back for `extend`, and 20 photos get re-encoded, halved and cropped copies for `dedup`.
Timed in one process against one baseline, average-linkage clustering of the same embeddings:
  cluster    first run into an empty folder (clustering + manifest + hardlinks)
  rerun      the same command again (nothing to change: the idempotent path)
  refine     the full refine pipeline (min_faces 5: LFW people have few photos)
  extend     the held-back photos folded into both outputs
  dedup      identical and near-duplicate groups over the whole store
Quality, on the labelled face of each photo (the one nearest the centre): pairwise and BCubed F
of the raw persons, purity of refine's facesets, the share of held-back photos extend files with
their person, and dedup's recall of the made copies and its false groups.

Usage: python bench/jobs_bench.py [--shared ../shared] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the store builder the job tests use

PER_PERSON = 10
MIN_PHOTOS = 8
DEDUP_ORIGINALS = 20


def _choose(lfw: Path, photos: int) -> dict[str, list[Path]]:
    chosen: dict[str, list[Path]] = {}
    for folder in sorted(p for p in lfw.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.jpg"))
        if len(files) >= MIN_PHOTOS:
            chosen[folder.name] = files[:PER_PERSON]
        if sum(len(v) for v in chosen.values()) >= photos:
            break
    return chosen


def _labelled_faces(store: object) -> dict[str, int]:
    """sha256 -> face_id of the face nearest the image centre."""
    table = store.face_table(with_embeddings=False)  # type: ignore[attr-defined]
    sizes = {img.sha256: (img.width, img.height) for img in store.images()}  # type: ignore[attr-defined]
    best: dict[str, tuple[float, int]] = {}
    for i, sha in enumerate(table.sha256):
        w, h = sizes[sha]
        x1, y1, x2, y2 = table.bbox[i]
        d = float(np.hypot((x1 + x2) / 2 - w / 2, (y1 + y2) / 2 - h / 2))
        if sha not in best or d < best[sha][0]:
            best[sha] = (d, int(table.face_id[i]))
    return {sha: face for sha, (_, face) in best.items()}


def _timed(fn: object, *args: object, **kwargs: object) -> tuple[object, float]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)  # type: ignore[operator]
    return value, time.perf_counter() - started


def run(shared: Path, photos: int, work: Path) -> dict[str, object]:
    import store_fixtures as sf

    from facesets.clustering import linkage, metrics
    from facesets.clustering.jobs.cluster import cluster
    from facesets.clustering.jobs.dedup import dedup
    from facesets.clustering.jobs.extend import extend
    from facesets.clustering.jobs.job import Photos, usable_faces
    from facesets.clustering.jobs.materialize import output_name
    from facesets.clustering.jobs.refine import refine
    from facesets.contract import defaults
    from facesets.contract.clustering import RefineParams

    chosen = sf.copy_photos(_choose(shared / "data" / "lfw", photos), work / "src")
    main = [p for files in chosen.values() for p in files[:-1]]
    held = [files[-1] for files in chosen.values()]
    person_of = {p: person for person, files in chosen.items() for p in files}
    store = sf.new_store(work / "faces.db")
    _, embed_s = _timed(sf.add_photos, store, main, shared)

    table = store.face_table()
    rows = usable_faces(table, Photos.scan(store))
    _, linkage_s = _timed(
        linkage.cluster_average_linkage, table.embedding[rows], defaults.CLUSTER_THRESHOLD
    )
    raw, refined = work / "raw", work / "refined"
    first, cluster_s = _timed(cluster, store, raw)
    _, rerun_s = _timed(cluster, store, raw)
    _, refine_s = _timed(refine, store, refined, RefineParams(min_faces=5))

    # Raw quality on labelled faces.
    sha_person = {sf.sha256_of(p): person_of[p] for p in main + held}
    manifest = json.loads((raw / "manifest.json").read_text())
    folder_of = {f["face_id"]: f["folder"] for f in manifest["faces"]}
    labelled = _labelled_faces(store)
    truth, predicted = [], []
    for sha, face in labelled.items():
        truth.append(sha_person[sha])
        folder = folder_of.get(face, "_singletons")
        predicted.append(int(folder.split("_")[1]) if folder.startswith("person_") else -1)
    pairwise = metrics.pairwise_prf(np.array(truth), np.array(predicted))
    bcubed = metrics.bcubed_prf(np.array(truth), np.array(predicted))

    sets = json.loads((refined / "refine_manifest.json").read_text())["facesets"]
    labelled_ids = {face: sha for sha, face in labelled.items()}
    majority = total = 0
    for entry in sets:
        people = Counter(
            sha_person[labelled_ids[f]] for f in entry["face_ids"] if f in labelled_ids
        )
        majority += max(people.values(), default=0)
        total += sum(people.values())

    # extend: the held-back photos into both outputs.
    sf.add_photos(store, held, shared)
    extended, extend_s = _timed(extend, store, raw, refined)
    manifest = json.loads((raw / "manifest.json").read_text())
    sha_of_labelled = {face: sha for sha, face in _labelled_faces(store).items()}
    members: dict[str, Counter] = {}
    for f in manifest["faces"]:
        sha = sha_of_labelled.get(f["face_id"])
        if sha is not None and f["folder"].startswith("person_"):
            members.setdefault(f["folder"], Counter())[sha_person[sha]] += 1
    home = {c.most_common(1)[0][0]: folder for folder, c in members.items()}
    placed = sum(
        1
        for p in held
        if (raw / home.get(person_of[p], "-") / output_name(str(p.resolve()))).exists()
    )

    # dedup: copies of some photos, then the whole store.
    edits = work / "src" / "edits"
    edits.mkdir()
    originals = main[:: max(1, len(main) // DEDUP_ORIGINALS)][:DEDUP_ORIGINALS]
    copies = {o: sf.variants(o, edits) for o in originals}
    sf.add_photos(store, [c for cs in copies.values() for c in cs], shared)
    duplicates, dedup_s = _timed(dedup, store)
    groups = json.loads(Path(duplicates.manifest_path).read_text())["near"]
    found = [{m["sha256"] for m in g["members"]} for g in groups]
    expected = [{sf.sha256_of(p) for p in [o, *cs]} for o, cs in copies.items()]
    recall = sum(1 for e in expected if e in found) / len(expected)
    false_groups = sum(1 for g in found if g not in expected)
    store_photos = len(store.images())
    store.close()
    return {
        "photos": len(main),
        "people": len(chosen),
        "faces": int(rows.size),
        "embed_s": round(embed_s, 2),
        "seconds": {
            "linkage (baseline)": round(linkage_s, 3),
            "cluster": round(cluster_s, 3),
            "rerun": round(rerun_s, 3),
            "refine": round(refine_s, 3),
            "extend": round(extend_s, 3),
            "dedup": round(dedup_s, 3),
        },
        "ratio_to_linkage": {
            "cluster": round(cluster_s / linkage_s, 1),
            "rerun": round(rerun_s / linkage_s, 1),
            "refine": round(refine_s / linkage_s, 1),
        },
        "dedup_ms_per_photo": round(1000 * dedup_s / store_photos, 2),
        "files_placed": first.summary["files_placed"],  # type: ignore[attr-defined]
        "raw_pairwise_prf": [round(v, 4) for v in pairwise],
        "raw_bcubed_prf": [round(v, 4) for v in bcubed],
        "facesets": len(sets),
        "faceset_purity": round(majority / total, 4) if total else None,
        "extend_new_faces": extended.summary["new_faces"],  # type: ignore[attr-defined]
        "extend_held_back_filed_home": round(placed / len(held), 4),
        "dedup_copy_recall": round(recall, 4),
        "dedup_false_groups": false_groups,
    }


def main(shared: Path, quick: bool) -> dict[str, object]:
    photos = 200 if quick else 1000
    with tempfile.TemporaryDirectory(prefix="jobs-bench-") as tmp:
        result = run(shared, photos, Path(tmp))
    print(
        f"{result['photos']} LFW photos of {result['people']} people, {result['faces']} faces "
        f"(embedding took {result['embed_s']} s)"
    )
    print("profile (facesets against its own linkage step, no outside baseline):")
    print(f"{'step':<20}{'seconds':>10}{'x linkage':>12}")
    ratios = result["ratio_to_linkage"]
    for step, seconds in result["seconds"].items():  # type: ignore[union-attr]
        ratio = ratios.get(step, "")  # type: ignore[union-attr]
        print(f"{step:<20}{seconds:>10}{ratio!s:>12}")
    for key in (
        "dedup_ms_per_photo",
        "raw_pairwise_prf",
        "raw_bcubed_prf",
        "facesets",
        "faceset_purity",
        "extend_held_back_filed_home",
        "dedup_copy_recall",
        "dedup_false_groups",
    ):
        print(f"{key:<30}{result[key]}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    main(options.shared.resolve(), options.quick)
