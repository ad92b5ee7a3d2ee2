"""Immich staging throughput: 8 workers against 1 on the same assets.

The fake Immich server (tests/fake_immich.py) serves LFW photos on loopback with 50 ms of
latency per request, a stand-in for a server across a network: staging an asset costs two
round trips (its faces, its original), so throughput is bound by waiting, which concurrent
workers overlap. An Immich server handles a few requests at once (a small worker pool), so
the headline ratio is measured with the fake server limited to POOL requests at a time (the
rest queue); the ratio against an unlimited server is reported beside it. Each run stages into
a fresh folder; the ratios are measured in one process against the 1-worker baseline.

    python bench/immich_bench.py --shared ../shared [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fake_immich import FakeImmich, lfw_library  # noqa: E402

from facesets.orchestrator.immich.config import StageConfig  # noqa: E402
from facesets.orchestrator.immich.stage import stage  # noqa: E402

KEY = "bench-key"
LATENCY_S = 0.05
POOL = 4  # requests the fake server handles at once
PREVIEW_SIZE = 160


def _photos(lfw: Path, count: int) -> list[Path]:
    photos: list[Path] = []
    for folder in sorted(p for p in lfw.iterdir() if p.is_dir()):
        photos.extend(sorted(folder.glob("*.jpg")))
        if len(photos) >= count:
            break
    return photos[:count]


def _run(fake: FakeImmich, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="immich-bench-") as root:
        config = StageConfig(
            url=fake.url,
            api_key=KEY,
            user="bench",
            staging_root=Path(root),
            workers=workers,
            progress=False,
        )
        started = time.perf_counter()
        summary = stage(config)
        elapsed = time.perf_counter() - started
    if summary.exit_code != 0 or summary.staged != summary.seen:
        raise RuntimeError(f"staging failed: {summary.report()}")
    return {
        "assets": summary.seen,
        "seconds": round(elapsed, 3),
        "assets_per_s": summary.seen / elapsed,
    }


def main(shared: Path, quick: bool) -> dict:
    count = 48 if quick else 160
    assets = lfw_library(_photos(shared / "data" / "lfw", count))
    runs: dict[str, dict[str, dict[str, float]]] = {}
    requests: dict[str, int] = {}
    for label, pool in (("pool", POOL), ("unlimited", 0)):
        with FakeImmich(assets, KEY, preview_size=PREVIEW_SIZE) as fake:
            fake.faults.latency_s = LATENCY_S
            fake.faults.max_concurrent = pool
            runs[label] = {"1": _run(fake, 1), "8": _run(fake, 8)}
            requests = dict(fake.requests)
    ratios = {
        label: run["8"]["assets_per_s"] / run["1"]["assets_per_s"] for label, run in runs.items()
    }
    single, parallel = runs["pool"]["1"], runs["pool"]["8"]
    result = {
        "assets": len(assets),
        "latency_ms_per_request": LATENCY_S * 1000,
        "server_concurrent_requests": POOL,
        "workers_1_assets_per_s": round(single["assets_per_s"], 2),
        "workers_8_assets_per_s": round(parallel["assets_per_s"], 2),
        "workers_1_seconds": single["seconds"],
        "workers_8_seconds": parallel["seconds"],
        "speedup_8_vs_1": round(ratios["pool"], 2),
        "speedup_8_vs_1_unlimited_server": round(ratios["unlimited"], 2),
        "target_speedup": 5.0,
        "requests": requests,
    }
    print(
        f"immich staging, {len(assets)} assets, {LATENCY_S * 1000:.0f} ms per request, server "
        f"handling {POOL} at once: 1 worker {single['assets_per_s']:.1f} assets/s, 8 workers "
        f"{parallel['assets_per_s']:.1f} assets/s, speedup {ratios['pool']:.2f}x (target >= 5x; "
        f"{ratios['unlimited']:.2f}x against an unlimited server)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    print(json.dumps(main(options.shared, options.quick), indent=2))
