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


def build_slice(
    lfw: Path,
    photos: Path,
    people: int = len(PEOPLE),
    per_person: int = PER_PERSON,
    others: int = OTHERS,
) -> int:
    count = 0
    named = PEOPLE[:people]
    rest = [p for p in sorted(lfw.iterdir()) if p.is_dir() and p.name not in PEOPLE][:others]
    for folder, limit in [
        *((lfw / name, per_person) for name in named),
        *((o, 2) for o in rest),
    ]:
        for photo in sorted(folder.glob("*.jpg"))[:limit]:
            target = photos / folder.name / photo.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(photo, target)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("demo"))
    # A smaller slice for a quick look (and for the test of `make demo`).
    parser.add_argument(
        "--people", type=int, default=len(PEOPLE), help="people with many photos (%(default)s)"
    )
    parser.add_argument(
        "--per-person", type=int, default=PER_PERSON, help="photos of each (%(default)s)"
    )
    parser.add_argument(
        "--others", type=int, default=OTHERS, help="people with one or two photos (%(default)s)"
    )
    parser.add_argument(
        "--min-faces", type=int, default=10, help="smallest faceset kept (%(default)s)"
    )
    options = parser.parse_args(argv)
    shared = options.shared.resolve()
    photos = options.out / "photos"
    count = build_slice(
        shared / "data" / "lfw", photos, options.people, options.per_person, options.others
    )
    print(f"demo: {count} LFW photos in {photos}, model pack facepack-mini from {shared}")
    os.environ.setdefault("FACESETS_MODEL_ROOT", str(shared))
    os.environ.setdefault("FACESETS_MODEL_PACK", "facepack-mini")
    from facesets.orchestrator.cli import main as facesets

    # A small slice: facesets of 10 photos instead of the default 15.
    code = facesets(
        ["run", str(photos), str(options.out / "result"), "--min-faces", str(options.min_faces)]
    )
    if code == 0:
        report = (options.out / "result" / "export" / "report" / "index.html").resolve()
        print(f"\nOpen the review report: file://{report}")
    return code


if __name__ == "__main__":
    sys.exit(main())
