"""`facesets immich stage` then `facesets immich import`, twice, against a fake Immich server:
the first import builds new facesets, the second routes new photos of a known person into that
person's faceset (numbers kept) and numbers a new person past the maximum."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zipfile
from collections import Counter

from fake_immich import FakeImmich, lfw_library

from facesets.contract.layout import read_json
from services import run_facesets, service_flags

KEY = "import-test-key-0001"
FIRST = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")
LATER = "Gerhard_Schroeder"


def facesets(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMMICH_URL": url, "IMMICH_API_KEY": KEY}
    return run_facesets("immich", *args, env=env)


def test_import_builds_facesets_then_routes_new_photos_to_known_identities(
    lfw_dir, tmp_path, module_services
):
    photos = {p: sorted((lfw_dir / p).glob("*.jpg")) for p in (*FIRST, LATER)}
    first = [f for p in FIRST for f in photos[p][:9]]
    second = first + photos["Colin_Powell"][9:14] + photos[LATER][:9]
    staging = tmp_path / "staging"
    common = ["--user", "alice", "--staging-root", str(staging)]
    imported = [*common, "--min-faces", "5", "--json", *service_flags(module_services, "import")]

    with FakeImmich(lfw_library(first), KEY) as fake:
        staged = facesets(fake.url, "stage", *common, "--no-progress")
        assert staged.returncode == 0, staged.stderr
    done = facesets("http://127.0.0.1:9", "import", *imported)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["staged"] == len(first)
    assert result["route"]["new_facesets"] == len(FIRST)
    manifest = read_json(staging / "alice" / "facesets" / "refine_manifest.json")
    before = {e["number"]: set(e["face_ids"]) for e in manifest["facesets"]}
    assert sorted(before) == [1, 2, 3]
    export = staging / "alice" / "export"
    assert len(list(export.rglob("*.fsz"))) == 2 * len(FIRST)
    assert KEY not in "".join(
        p.read_text(errors="ignore") for p in (staging / "alice").glob("*.json")
    )

    with FakeImmich(lfw_library(second), KEY) as fake:
        staged = facesets(fake.url, "stage", *common, "--no-progress")
        assert staged.returncode == 0, staged.stderr
    again = facesets("http://127.0.0.1:9", "import", *imported)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["embed"]["embedded"] == len(second) - len(first)
    assert result["route"]["identities_matched"] == 1
    assert result["route"]["faces_matched"] >= 4
    assert result["route"]["new_facesets"] == 1
    manifest = read_json(staging / "alice" / "facesets" / "refine_manifest.json")
    after = {e["number"]: set(e["face_ids"]) for e in manifest["facesets"]}
    assert sorted(after) == [1, 2, 3, 4]
    grown = [n for n in before if after[n] > before[n]]
    assert len(grown) == 1 and all(after[n] >= before[n] for n in before)
    # Who each faceset shows, from the LFW folders of its photos (staged byte for byte).
    person_of = {hashlib.sha256(p.read_bytes()).hexdigest(): p.parent.name for p in second}
    people = {
        e["number"]: Counter(person_of[sha] for sha in e["photos"]) for e in manifest["facesets"]
    }
    # The grown faceset is Colin Powell's, and holds his photos staged second.
    assert set(people[grown[0]]) == {"Colin_Powell"}
    assert people[grown[0]]["Colin_Powell"] >= 9 + 4
    assert sorted(next(iter(people[n])) for n in (1, 2, 3)) == sorted(FIRST)
    assert all(len(people[n]) == 1 for n in people)
    assert set(people[4]) == {LATER}
    bundles = sorted(export.rglob("faceset_004_all.fsz"))
    assert bundles and zipfile.ZipFile(bundles[0]).namelist()

    # Nothing new: a third import changes nothing.
    third = json.loads(facesets("http://127.0.0.1:9", "import", *imported).stdout)
    assert third["route"]["faces_matched"] == 0 and third["route"]["new_facesets"] == 0
