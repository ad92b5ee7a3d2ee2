"""Photos per second on HEIC beside JPEG, for the same photos, in one run.

Phone-size photos (4000x3000, built as in embed_bench: LFW photos enlarged on an LFW backdrop,
with sensor-like noise) saved as JPEG (quality 90) and as HEIC as a phone stores them: 512 px
tiles, files smaller than the JPEG (x265's fastest preset, to keep the build short). Two
measures on each: decoding alone (one thread, as the inference service decodes
before detection: JPEG at a reduced DCT scale, HEIC at full size since HEVC has none), and
`facesets embed` end to end with its embedded services. The HEIC/JPEG ratios are the result;
the faces found in both are compared, photo by photo.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

HEIC_OPTIONS = {"quality": 50, "tile_size": 512, "enc_params": {"preset": "ultrafast"}}


def build_pairs(lfw: Path, folder: Path, count: int) -> tuple[Path, Path]:
    """count photos as JPEG in folder/jpeg and the same pixels as HEIC in folder/heic."""
    from embed_bench import build_large_photos

    from facesets.common import decode  # noqa: F401  registers the HEIF encoder with Pillow

    jpeg_dir, heic_dir = folder / "jpeg", folder / "heic"
    heic_dir.mkdir(parents=True, exist_ok=True)
    build_large_photos(lfw, jpeg_dir, count)
    for photo in sorted(jpeg_dir.glob("*.jpg")):
        with Image.open(photo) as image:
            buffer = io.BytesIO()
            image.save(buffer, "HEIF", **HEIC_OPTIONS)
        (heic_dir / f"{photo.stem}.heic").write_bytes(buffer.getvalue())
    return jpeg_dir, heic_dir


def decode_rate(photos: list[Path], repeats: int) -> float:
    """Photos decoded per second on one thread, as the inference service decodes them."""
    from facesets.common import settings
    from facesets.common.decode import decode

    datas = [p.read_bytes() for p in photos]
    long_side = 2 * settings.inference().detection.input_size
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for data in datas:
            decode(data, settings.shared().decode.max_image_pixels, long_side=long_side)
        times.append(time.perf_counter() - started)
    return len(datas) / min(times)


def same_faces(jpeg: dict[str, list[np.ndarray]], heic: dict[str, list[np.ndarray]]) -> dict:
    by_stem = {Path(p).stem: faces for p, faces in heic.items()}
    counts_equal, sims = 0, []
    for path, faces in jpeg.items():
        others = by_stem.get(Path(path).stem, [])
        counts_equal += len(others) == len(faces)
        sims += [max((float(a @ b) for b in others), default=0.0) for a in faces]
    return {
        "photos_with_same_face_count": counts_equal,
        "faces_jpeg": sum(map(len, jpeg.values())),
        "faces_heic": sum(map(len, heic.values())),
        "min_best_cos": round(min(sims), 4) if sims else None,
        "median_best_cos": round(statistics.median(sims), 4) if sims else None,
    }


def main(shared: Path, quick: bool) -> dict:
    from embed_bench import facesets_embed

    count = 3 if quick else 12
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        jpeg_dir, heic_dir = build_pairs(shared / "data" / "lfw", Path(tmp), count)
        build_s = time.perf_counter() - started
        jpegs, heics = sorted(jpeg_dir.glob("*.jpg")), sorted(heic_dir.glob("*.heic"))
        sizes = {
            "jpeg_mb": round(sum(p.stat().st_size for p in jpegs) / len(jpegs) / 1e6, 2),
            "heic_mb": round(sum(p.stat().st_size for p in heics) / len(heics) / 1e6, 2),
        }
        repeats = 1 if quick else 2
        decode_jpeg = decode_rate(jpegs, repeats)
        decode_heic = decode_rate(heics, repeats)
        jpeg_s, jpeg_found = facesets_embed(jpeg_dir, shared)
        heic_s, heic_found = facesets_embed(heic_dir, shared)
    row = {
        "photos": count,
        "size": "4000x3000",
        **sizes,
        "build_s": round(build_s, 1),
        "decode_jpeg_photos_per_s": round(decode_jpeg, 2),
        "decode_heic_photos_per_s": round(decode_heic, 2),
        "decode_ratio_heic_to_jpeg": round(decode_heic / decode_jpeg, 3),
        "embed_jpeg_photos_per_s": round(count / jpeg_s, 2),
        "embed_heic_photos_per_s": round(count / heic_s, 2),
        "embed_ratio_heic_to_jpeg": round(jpeg_s / heic_s, 3),
        **same_faces(jpeg_found, heic_found),
    }
    print(json.dumps(row), flush=True)
    print(
        f"HEIC beside JPEG, {count} photos of 4000x3000: embed {row['embed_heic_photos_per_s']} "
        f"vs {row['embed_jpeg_photos_per_s']} photos/s (HEIC/JPEG "
        f"{row['embed_ratio_heic_to_jpeg']}); decode alone {row['decode_heic_photos_per_s']} vs "
        f"{row['decode_jpeg_photos_per_s']} photos/s ({row['decode_ratio_heic_to_jpeg']}); "
        f"faces: {row['photos_with_same_face_count']}/{count} photos with the same count, "
        f"min best cosine {row['min_best_cos']}"
    )
    return row


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    main(options.shared.resolve(), options.quick)
