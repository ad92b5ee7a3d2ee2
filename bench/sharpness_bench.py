"""The sharpness gate on LFW at native size: the earlier measure against the scale-invariant one.

Every face the detector finds in LFW (the mini pack's SCRFD, as the inference service runs it)
is measured both ways: the earlier Laplacian variance over the box at the photo's own
resolution (gate 40) and `inference/sharpness.face_sharpness` (gate
`defaults.QUALITY_MIN_BLUR`). Reported: the share of faces each gate keeps and the difference
(the default was recalibrated so that it stays within 5 percentage points), the same for the
whole quality gate (size, sharpness, detector score), the thresholds of the new measure that
would keep exactly the earlier shares, and the mean sharpness term of the composite quality
both ways. A slice of the faces is also measured after 2x and 4x bicubic enlargement: the
median ratio to native size, each way.

Usage: python bench/sharpness_bench.py [--shared ../shared] [--quick]
(--quick: every 10th photo; the full run measures all 13,233.)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facesets.contract import defaults

if TYPE_CHECKING:
    from facesets.inference.models import ModelPack

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
# The gate and the composite's log range on the earlier measure (QUALITY_MIN_BLUR,
# quality.blur_low/high before they were recalibrated).
LEGACY_MIN_BLUR = 40.0
LEGACY_BLUR_LOW = 10.0
LEGACY_BLUR_HIGH = 1000.0
SCALES = (2, 4)
SCALE_SAMPLE = 200  # photos also measured enlarged


def _log_score(values: np.ndarray, low: float, high: float) -> np.ndarray:
    clipped = np.maximum(values, low)
    return np.clip((np.log(clipped) - math.log(low)) / (math.log(high) - math.log(low)), 0, 1)


def _pack(shared: Path) -> ModelPack:
    from facesets.common import settings
    from facesets.inference.models import load_pack

    return load_pack(
        shared,
        "facepack-mini",
        ["CPUExecutionProvider"],
        settings.inference().detection.input_size,
        settings.inference().detection.score_threshold,
        1,
    )


def _measure(shared: Path, photos: list[Path]) -> np.ndarray:
    """(faces, 5): old blur, new sharpness, face short edge, detector score, photo index."""
    from facesets.common import settings
    from facesets.inference.models import laplacian_blur
    from facesets.inference.sharpness import face_sharpness

    pack = _pack(shared)

    def one(index: int) -> list[tuple[float, float, float, float, float]]:
        bgr = cv2.imread(str(photos[index]))
        if bgr is None:
            return []
        rows = []
        for d in pack.detector.detect(bgr):
            short = float(min(d.bbox[2] - d.bbox[0], d.bbox[3] - d.bbox[1]))
            rows.append(
                (laplacian_blur(bgr, d.bbox), face_sharpness(bgr, d.bbox), short, d.score, index)
            )
        return rows

    found: list[tuple[float, float, float, float, float]] = []
    with ThreadPoolExecutor(settings.usable_cores()) as pool:
        for done, rows in enumerate(pool.map(one, range(len(photos))), start=1):
            found.extend(rows)
            if done % 1000 == 0:
                print(f"  {done}/{len(photos)} photos", flush=True)
    return np.asarray(found, dtype=np.float64).reshape(-1, 5)


def _scale_ratios(shared: Path, photos: list[Path]) -> dict[str, dict[str, float]]:
    """Median ratio of each measure at 2x and 4x (bicubic) to native size, same faces."""
    from facesets.inference.models import laplacian_blur
    from facesets.inference.sharpness import face_sharpness

    pack = _pack(shared)
    ratios: dict[str, dict[int, list[float]]] = {"old": {}, "new": {}}
    for photo in photos:
        bgr = cv2.imread(str(photo))
        faces = pack.detector.detect(bgr) if bgr is not None else []
        if not faces:
            continue
        box = max(faces, key=lambda d: d.score).bbox
        base = laplacian_blur(bgr, box), face_sharpness(bgr, box)
        for factor in SCALES:
            big = cv2.resize(bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
            values = laplacian_blur(big, box * factor), face_sharpness(big, box * factor)
            for name, value, ref in zip(("old", "new"), values, base, strict=True):
                if ref > 0:
                    ratios[name].setdefault(factor, []).append(value / ref)
    return {
        name: {f"{f}x": round(float(np.median(v)), 3) for f, v in by.items()}
        for name, by in ratios.items()
    }


def main(shared: Path, quick: bool) -> dict:
    from facesets.common import settings

    lfw = shared / "data" / "lfw"
    photos = sorted(lfw.glob("*/*.jpg"))
    if quick:
        photos = photos[::10]
    started = time.perf_counter()
    faces = _measure(shared, photos)
    seconds = time.perf_counter() - started
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / ("sharpness_lfw_quick.npy" if quick else "sharpness_lfw.npy"), faces)
    old, new, short, score = faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3]
    kept_old = float(np.mean(old >= LEGACY_MIN_BLUR))
    kept_new = float(np.mean(new >= defaults.QUALITY_MIN_BLUR))
    others = (short >= defaults.QUALITY_MIN_SHORT) & (score >= defaults.QUALITY_MIN_DET_SCORE)
    gate_old = float(np.mean(others & (old >= LEGACY_MIN_BLUR)))
    gate_new = float(np.mean(others & (new >= defaults.QUALITY_MIN_BLUR)))
    below = lambda values, limit: float(np.mean(values < limit))  # noqa: E731
    results = {
        "photos": len(photos),
        "faces": int(len(faces)),
        "seconds": round(seconds, 1),
        "blur_gate_kept_old": round(kept_old, 4),
        "blur_gate_kept_new": round(kept_new, 4),
        "blur_gate_difference_pp": round(100 * (kept_new - kept_old), 2),
        "quality_gate_kept_old": round(gate_old, 4),
        "quality_gate_kept_new": round(gate_new, 4),
        "quality_gate_difference_pp": round(100 * (gate_new - gate_old), 2),
        "threshold_old": LEGACY_MIN_BLUR,
        "threshold_new": defaults.QUALITY_MIN_BLUR,
        # New-measure values at the quantiles of the earlier gate and log range.
        "matching_threshold_new": round(float(np.quantile(new, below(old, LEGACY_MIN_BLUR))), 2),
        "matching_low_new": round(float(np.quantile(new, below(old, LEGACY_BLUR_LOW))), 2),
        "matching_high_new": round(float(np.quantile(new, below(old, LEGACY_BLUR_HIGH))), 2),
        "sharpness_term_mean_old": round(
            float(_log_score(old, LEGACY_BLUR_LOW, LEGACY_BLUR_HIGH).mean()), 4
        ),
        "sharpness_term_mean_new": round(
            float(
                _log_score(
                    new, settings.export().quality.blur_low, settings.export().quality.blur_high
                ).mean()
            ),
            4,
        ),
        "median_ratio_to_native": _scale_ratios(
            shared, photos[:: max(1, len(photos) // SCALE_SAMPLE)]
        ),
    }
    print(
        f"{results['faces']} faces in {results['photos']} photos ({seconds:.0f} s)\n"
        f"blur gate keeps    old {kept_old:.1%} (>= {LEGACY_MIN_BLUR:g}), "
        f"new {kept_new:.1%} (>= {defaults.QUALITY_MIN_BLUR:g}): "
        f"{results['blur_gate_difference_pp']:+.2f} pp\n"
        f"quality gate keeps old {gate_old:.1%}, new {gate_new:.1%}: "
        f"{results['quality_gate_difference_pp']:+.2f} pp\n"
        f"new thresholds matching the old shares: gate {results['matching_threshold_new']}, "
        f"low {results['matching_low_new']}, high {results['matching_high_new']}\n"
        f"sharpness term mean old {results['sharpness_term_mean_old']}, "
        f"new {results['sharpness_term_mean_new']}\n"
        f"median ratio to native size: {results['median_ratio_to_native']}"
    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    sys.exit(0 if main(options.shared.resolve(), options.quick) else 1)
