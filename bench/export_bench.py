"""Export profile: cost and effect of the one-face check on real LFW photos.

A profile, not a benchmark against another tool: the checked export is timed against itself
with the check answered without looking (what a plain cropper would ship).

One faceset per LFW person (labelled face = nearest the image centre, mini pack). The export
runs three times in one process on the same rows:
  baseline  count_faces answers 1 for every crop (no check: what a plain cropper would ship);
  checked   the pack's real SCRFD detector counts faces in every crop (the shipped behaviour);
  rerun     the checked export again into the same folder (idempotent re-run).
Reported: seconds per face of each run and their ratios, the share of default-padding crops
that held != 1 face (each would poison a roop faceset), how many of those a tighter crop saved,
whether the re-run's .fsz files are byte-identical, and the report's render time.
LFW faces are 90-110 px, so the minimum face size is lowered to 80 px here.

Usage: python bench/export_bench.py [--shared ../shared] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIN_FACE_SHORT = 80.0


def _rows(shared: Path, people: int, per_person: int) -> dict[int, list]:
    from insightface.app import FaceAnalysis

    from facesets.export.crops import load_image_oriented
    from facesets.export.records import FaceRow
    from facesets.inference.sharpness import face_sharpness

    app = FaceAnalysis(name="facepack-mini", root=str(shared), providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    lfw = shared / "data" / "lfw"
    folders = [d for d in sorted(lfw.iterdir()) if d.is_dir()]
    chosen = [d for d in folders if len(list(d.glob("*.jpg"))) >= per_person][:people]
    sets: dict[int, list] = {}
    face_id = 0
    for number, folder in enumerate(chosen, start=1):
        sets[number] = []
        for path in sorted(folder.glob("*.jpg"))[:per_person]:
            image = load_image_oriented(path)
            faces = app.get(image)
            if not faces:
                continue
            centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
            face = min(
                faces, key=lambda f: float(np.linalg.norm((f.bbox[:2] + f.bbox[2:]) / 2 - centre))
            )
            x1, y1, x2, y2 = (float(v) for v in face.bbox)
            face_id += 1
            sets[number].append(
                FaceRow(
                    face_id=face_id,
                    sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                    path=str(path),
                    bbox=(x1, y1, x2, y2),
                    kps=face.kps,
                    det_score=float(face.det_score),
                    embedding=face.normed_embedding,
                    face_short=min(x2 - x1, y2 - y1),
                    blur=face_sharpness(image, np.array([x1, y1, x2, y2])),
                    image_width=image.shape[1],
                    image_height=image.shape[0],
                )
            )
    return sets


def _counter(shared: Path):
    import insightface

    det = insightface.model_zoo.get_model(
        str(shared / "models" / "facepack-mini" / "det_scrfd_2.5g_bnkps.onnx"),
        providers=["CPUExecutionProvider"],
    )
    det.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    return lambda crops: [int(len(det.detect(crop)[0])) for crop in crops]


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.fsz"))}


def main(shared: Path, quick: bool) -> dict:
    from facesets.contract import layout
    from facesets.contract.export import ExportSwapParams
    from facesets.export.crops import load_image_oriented
    from facesets.export.report import write_report
    from facesets.export.swap import export_swap

    people, per_person = (6, 6) if quick else (25, 12)
    started = time.perf_counter()
    sets = _rows(shared, people, per_person)
    faces = sum(len(rows) for rows in sets.values())
    print(f"{len(sets)} people, {faces} faces analysed in {time.perf_counter() - started:.1f} s")
    count_faces = _counter(shared)
    detector_s = 0.0

    def timed_count(crops: list[np.ndarray]) -> list[int]:
        nonlocal detector_s
        t0 = time.perf_counter()
        try:
            return count_faces(crops)
        finally:
            detector_s += time.perf_counter() - t0

    options = {
        "load_image": load_image_oriented,
        "parameters": ExportSwapParams(min_face_short=MIN_FACE_SHORT),
    }
    with tempfile.TemporaryDirectory(prefix="export_bench_") as tmp:
        t0 = time.perf_counter()
        export_swap(sets, Path(tmp) / "baseline", count_faces=lambda c: [1] * len(c), **options)
        baseline_s = time.perf_counter() - t0

        out = Path(tmp) / "checked"
        t0 = time.perf_counter()
        summary = export_swap(sets, out, count_faces=timed_count, **options)
        checked_s = time.perf_counter() - t0
        checked_detector_s = detector_s
        first = _digests(out)

        t0 = time.perf_counter()
        export_swap(sets, out, count_faces=timed_count, **options)
        rerun_s = time.perf_counter() - t0
        identical = _digests(out) == first

        t0 = time.perf_counter()
        write_report(out)
        report_s = time.perf_counter() - t0

        first_pass: Counter[int] = Counter()
        for number in sets:
            manifest = json.loads(
                (out / layout.FACESET_DIR.format(number) / layout.FACESET_MANIFEST).read_text()
            )
            for item in [*manifest["crops"], *manifest["dropped"]]:
                if item.get("attempts"):
                    first_pass[min(int(item["attempts"][0][1]), 2)] += 1

    checked_faces = sum(first_pass.values())
    bad_first = first_pass[0] + first_pass[2]
    result = {
        "people": len(sets),
        "faces": faces,
        "baseline_ms_per_face": round(1000 * baseline_s / faces, 2),
        "checked_ms_per_face": round(1000 * checked_s / faces, 2),
        "check_overhead_ratio": round(checked_s / baseline_s, 2),
        "detector_share_of_checked": round(checked_detector_s / checked_s, 3),
        "rerun_to_first_ratio": round(rerun_s / checked_s, 2),
        "rerun_fsz_identical": identical,
        "report_ms": round(1000 * report_s, 1),
        "crops_checked": checked_faces,
        "default_crop_not_one_face_share": round(bad_first / max(1, checked_faces), 4),
        "default_crop_extra_faces": first_pass[2],
        "default_crop_no_face": first_pass[0],
        "recropped": summary["recropped"],
        "dropped": summary["dropped"],
        "kept": summary["kept"],
    }
    print("profile (facesets' export with and without its one-face check):")
    for key, value in result.items():
        print(f"{key:36s} {value}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.shared.resolve(), args.quick)
    sys.exit(0)
