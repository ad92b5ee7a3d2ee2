"""`make demo`: `facesets run` on a slice of LFW with the small model pack from ../shared.

The slice: 8 people with many photos (20 each) and 40 people with one or two, copied into
demo/photos so that the run reads an ordinary photo folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

PEOPLE = (
    "George_W_Bush",
    "Colin_Powell",
    "Tony_Blair",
    "Donald_Rumsfeld",
    "Gerhard_Schroeder",
    "Ariel_Sharon",
    "Hugo_Chavez",
    "Junichiro_Koizumi",
)
PER_PERSON = 20
OTHERS = 40


def build_slice(lfw: Path, photos: Path) -> int:
    count = 0
    others = [p for p in sorted(lfw.iterdir()) if p.is_dir() and p.name not in PEOPLE][:OTHERS]
    for folder, limit in [
        *((lfw / name, PER_PERSON) for name in PEOPLE),
        *((o, 2) for o in others),
    ]:
        for photo in sorted(folder.glob("*.jpg"))[:limit]:
            target = photos / folder.name / photo.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(photo, target)
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("demo"))
    options = parser.parse_args()
    shared = options.shared.resolve()
    photos = options.out / "photos"
    count = build_slice(shared / "data" / "lfw", photos)
    print(f"demo: {count} LFW photos in {photos}, model pack facepack-mini from {shared}")
    os.environ.setdefault("FACESETS_MODEL_ROOT", str(shared))
    os.environ.setdefault("FACESETS_MODEL_PACK", "facepack-mini")
    from facesets.orchestrator.cli import main as facesets

    # A small slice: facesets of 10 photos instead of the default 15.
    code = facesets(["run", str(photos), str(options.out / "result"), "--min-faces", "10"])
    if code == 0:
        report = (options.out / "result" / "export" / "report" / "index.html").resolve()
        print(f"\nOpen the review report: file://{report}")
    return code


if __name__ == "__main__":
    sys.exit(main())
