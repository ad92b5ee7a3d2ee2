"""A real export of an LFW slice for the review app's tests: photos of three people in a store
(the mini model pack), exported by `facesets export-swap` into one faceset each, with the first
two recorded as a look-alike pair (as refine records one)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

from conftest import lfw_people
from store_fixtures import add_photos, new_store, sha256_of

from facesets.contract import layout
from services import FACESETS, run_facesets


def build_lfw_export(
    root: Path, lfw_dir: Path, model_root: Path, per_person: int = 5, lookalikes: bool = True
) -> dict:
    """`lookalikes`: the first two facesets recorded as a look-alike pair in the plan."""
    people = lfw_people(lfw_dir, 3, per_person, min_photos=per_person)
    photos: dict[str, list[Path]] = {}
    for person, paths in people.items():
        folder = root / "photos" / person
        folder.mkdir(parents=True)
        photos[person] = [Path(shutil.copy(p, folder / p.name)) for p in paths]
    store = new_store(root / "faces.db")
    add_photos(store, [p for paths in photos.values() for p in paths], model_root)
    table = store.face_table()
    largest: dict[str, tuple[float, int]] = {}
    for i, sha in enumerate(table.sha256):
        box = table.bbox[i]
        area = float((box[2] - box[0]) * (box[3] - box[1]))
        if sha not in largest or area > largest[sha][0]:
            largest[sha] = (area, int(table.face_id[i]))
    facesets = [
        {
            "name": layout.FACESET_DIR.format(n),
            "number": n,
            "face_ids": [largest[sha256_of(p)][1] for p in paths if sha256_of(p) in largest],
        }
        for n, paths in enumerate(photos.values())
    ]
    plan = root / "refined" / layout.REFINE_MANIFEST
    plan.parent.mkdir()
    pairs = [{"facesets": ["faceset_000", "faceset_001"], "distance": 0.61}] if lookalikes else []
    plan.write_text(
        json.dumps({"facesets": facesets, "lookalikes": pairs} if pairs else {"facesets": facesets})
    )
    export = root / "export"
    done = run_facesets(
        "export-swap",
        str(store.path),
        str(plan),
        str(export),
        "--min-face-short",
        "0",
        "--json",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    store.close()
    return {"export": export, "people": list(photos), "store": root / "faces.db", "root": root}


class ReviewApp:
    """`facesets review EXPORT --no-browser` in a child process; its address from stdout."""

    def __init__(self, export: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [*FACESETS, "review", str(export), "--no-browser", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = ""
        timer = threading.Timer(120, self.process.kill)
        timer.start()
        try:
            line = self.process.stdout.readline() if self.process.stdout else ""
        finally:
            timer.cancel()
        if not line.startswith("review: "):
            self.process.kill()
            raise AssertionError(f"no address: {line!r} {self.process.stderr.read()[-3000:]}")
        self.url = line.split(" ", 1)[1].strip()
        self.base = self.url.split("?")[0].rstrip("/")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
