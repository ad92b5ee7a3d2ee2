"""`make bench`: every benchmark of facesets, each reporting ratios measured in one run.

Usage: python bench/run.py [--shared ../shared] [--quick] [--only embed,replicas,...]
Results are printed and written to bench/out/results.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
BENCHES = (
    "embed",
    "replicas",
    "heic",
    "clustering",
    "lfw_jobs",
    "jobs",
    "export",
    "immich",
    "sharpness",
    "video",
    "review",
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated benchmarks")
    options = parser.parse_args()
    shared = options.shared.resolve()
    if not (shared / "models" / "facepack-mini").is_dir():
        print(f"benchmarks need the sample data and mini model pack in {shared}", file=sys.stderr)
        return 2
    from facesets.shared import logs

    logs.configure("warning")
    results: dict[str, object] = {}
    for name in options.only.split(","):
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        module = importlib.import_module(f"{name}_bench")
        results[name] = module.main(shared, options.quick)
        print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
