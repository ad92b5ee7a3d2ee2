"""The review app (`facesets review`) at library scale: 300 facesets, 20,000 crops.

The export is built synthetically in the layout export-swap writes (crops cut from LFW photos,
repeated to reach the size; .fsz bundles and manifests as export-swap writes them), then
`facesets review EXPORT` is started as a user would start it (its local export service builds
the report's thumbnail cache first). Reported, on this machine, in one run:
  startup      seconds until the app answers (the report and its thumbnails built first);
  first screen the overview's HTML plus every thumbnail on it (page 1), seconds and bytes,
               cold (first request) and warm;
  faceset page one faceset's page with all its crop thumbnails;
  action       a reject of one crop and its undo through the app (each a maintenance run of the
               export service: the .fsz rebuild and the report refresh included), and the .fsz
               rebuild of that faceset alone, timed in this process, for comparison.
Targets (issue 31): first screen under 1 s and 5 MB; an action under 300 ms plus its rebuild.

Usage: python bench/review_bench.py [--shared ../shared] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CROP_SIDE = 128  # LFW faces are ~100 px: crops of this side, as export-swap's are at least
TOP_N = 30


def _crops(lfw: Path, count: int) -> list[bytes]:
    """PNG crops of the central face region of `count` LFW photos."""
    photos = sorted(lfw.glob("*/*.jpg"))[:count]
    crops = []
    for path in photos:
        image = cv2.imread(str(path))
        h, w = image.shape[:2]
        side = min(h, w) // 2
        y, x = (h - side) // 2, (w - side) // 2
        crop = cv2.resize(image[y : y + side, x : x + side], (CROP_SIDE, CROP_SIDE))
        ok, data = cv2.imencode(".png", crop)
        assert ok
        crops.append(data.tobytes())
    return crops


def build_export(out: Path, sets: int, crops_total: int, photos: list[bytes]) -> int:
    from facesets.contract import layout
    from facesets.export.fsz import member_name, write_fsz

    per_set = crops_total // sets
    facesets: dict[str, Any] = {}
    made = 0
    rng = np.random.default_rng(0)
    for number in range(sets):
        name = layout.FACESET_DIR.format(number)
        faces = out / name / layout.CROPS_DIR
        faces.mkdir(parents=True)
        count = per_set + (1 if number < crops_total - per_set * sets else 0)
        crops, members = [], []
        for rank in range(1, count + 1):
            data = photos[(number * 7 + rank) % len(photos)]
            # One byte after the PNG's end makes every crop distinct, as real crops are.
            data = data + bytes([made % 251])
            file_name = f"photo_{number:03d}_{rank:03d}.jpg_f0.png"
            (faces / file_name).write_bytes(data)
            composite = round(float(1.0 - rank / (count + 1) + rng.normal(0, 0.01)), 4)
            crops.append(
                {
                    "file": f"{name}/{layout.CROPS_DIR}/{file_name}",
                    "rank": rank,
                    "in_top": rank <= TOP_N,
                    "composite": composite,
                    "face_id": made,
                }
            )
            members.append((member_name(rank, data), data))
            made += 1
        top = layout.FSZ_TOP.format(number, TOP_N)
        everything = layout.FSZ_ALL.format(number)
        write_fsz(out / name / top, members[:TOP_N])
        write_fsz(out / name / everything, members)
        counts = {"faces": count, "kept": count, "top": min(TOP_N, count)}
        inner = {
            "faceset": name,
            "number": number,
            "params": {"top_n": TOP_N},
            "fsz_top": f"{name}/{top}",
            "fsz_all": f"{name}/{everything}",
            "counts": counts,
            "crops": crops,
            "dropped": [],
            "mean_quality": round(sum(c["composite"] for c in crops) / count, 4),
        }
        layout.atomic_write_json(out / name / layout.FACESET_MANIFEST, inner)
        facesets[name] = {
            "number": number,
            "dir": name,
            "manifest": f"{name}/{layout.FACESET_MANIFEST}",
            "fsz_top": inner["fsz_top"],
            "fsz_all": inner["fsz_all"],
            "counts": counts,
            "mean_quality": inner["mean_quality"],
            "top": [c["file"] for c in crops[:TOP_N]],
        }
    lookalikes = [
        {"facesets": [f"faceset_{i:03d}", f"faceset_{i + 1:03d}"], "distance": 0.6}
        for i in range(0, min(sets - 1, 40), 2)
    ]
    manifest = {"version": 1, "facesets": facesets, "lookalikes": lookalikes}
    layout.atomic_write_json(out / layout.EXPORT_MANIFEST, manifest)
    return made


def _get_all(client: httpx.Client, base: str, path: str) -> tuple[float, int, int, float]:
    """Seconds and bytes of a page and every image it shows (six at a time, as a browser
    fetches them), how many images, and the seconds of the page's HTML alone."""
    started = time.perf_counter()
    page = client.get(base + path)
    page.raise_for_status()
    html_s = time.perf_counter() - started
    images = re.findall(r'src="(/img/[^"]+)"', page.text)

    def fetch(src: str) -> int:
        answer = client.get(base + src)
        answer.raise_for_status()
        return len(answer.content)

    with ThreadPoolExecutor(6) as pool:
        total = len(page.content) + sum(pool.map(fetch, images))
    return time.perf_counter() - started, total, len(images), html_s


def _post(client: httpx.Client, base: str, token: str, action: str, body: dict) -> float:
    started = time.perf_counter()
    answer = client.post(
        f"{base}/api/{action}",
        json=body,
        headers={"X-CSRF-Token": token, "Origin": base},
    )
    took = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"{action}: {answer.status_code} {answer.text}")
    return took


def main(shared: Path, quick: bool) -> dict[str, Any]:
    from facesets.export.fsz import fsz_bytes
    from facesets.export.maintenance import runs

    sets, crops_total = (30, 2000) if quick else (300, 20000)
    lfw = shared / "data" / "lfw"
    result: dict[str, Any] = {"facesets": sets}
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        out = Path(tmp) / "export"
        started = time.perf_counter()
        result["crops"] = build_export(out, sets, crops_total, _crops(lfw, 400))
        result["build_s"] = round(time.perf_counter() - started, 1)
        print(f"export: {sets} facesets, {result['crops']} crops ({result['build_s']} s)")
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "facesets.orchestrator.cli", "review", str(out), "--no-browser"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        timer = threading.Timer(1800, process.kill)
        timer.start()
        try:
            line = process.stdout.readline() if process.stdout else ""
            if not line.startswith("review: "):
                raise RuntimeError(f"the review app did not start: {line!r}")
            base = line.split(" ", 1)[1].strip().rstrip("/")
            result["startup_s"] = round(time.perf_counter() - started, 2)
            with httpx.Client(timeout=120) as client:
                cold = _get_all(client, base, "/")
                warm = _get_all(client, base, "/")
                page = _get_all(
                    client, base, "/faceset/faceset_150" if not quick else "/faceset/faceset_015"
                )
                result["first_screen_cold_s"] = round(cold[0], 3)
                result["overview_html_cold_s"] = round(cold[3], 3)
                result["overview_html_warm_s"] = round(warm[3], 3)
                result["first_screen_warm_s"] = round(warm[0], 3)
                result["first_screen_bytes"] = cold[1]
                result["first_screen_images"] = cold[2]
                result["faceset_page_s"] = round(page[0], 3)
                result["faceset_page_bytes"] = page[1]
                html = client.get(base + "/faceset/faceset_010").text
                token = re.search(r'name="csrf-token" content="([^"]+)"', html)
                crop = re.search(r'data-crop="([^"]+)"', html)
                assert token and crop
                body = {"faceset": "faceset_010", "crops": [crop.group(1)]}
                result["reject_s"] = round(_post(client, base, token.group(1), "reject", body), 3)
                result["undo_s"] = round(_post(client, base, token.group(1), "undo", {}), 3)
        finally:
            timer.cancel()
            process.terminate()
            process.wait(60)
        started = time.perf_counter()
        members = runs.bundle_members(out, "faceset_010")
        fsz_bytes(members[:TOP_N])
        fsz_bytes(members)
        result["fsz_rebuild_s"] = round(time.perf_counter() - started, 3)
    result["load_average"] = round(os.getloadavg()[0], 1)
    result["first_screen_ok"] = result["first_screen_cold_s"] < 1.0 and (
        result["first_screen_bytes"] < 5_000_000
    )
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    main(options.shared.resolve(), options.quick)
