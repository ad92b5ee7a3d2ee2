"""Cannot-link in the jobs, on real LFW photos: group photos are two LFW photos side by side.

`G_ab` shows two people (A left, B right); `G_aa` and `G_new` show two photos of one person A
side by side, so average linkage would put both faces in A's cluster: the constraint keeps
them apart (as it would a pair of look-alike siblings), and turned off it does not.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from images import side_by_side
from store_fixtures import add_photos, lfw_slice, new_store, sha256_of

from facesets.clustering.jobs.cluster import cluster
from facesets.clustering.jobs.extend import extend
from facesets.clustering.jobs.import_folders import Trusted, import_folders
from facesets.clustering.jobs.refine import refine
from facesets.clustering.jobs.route import route
from facesets.clustering.store import FaceStore
from facesets.contract import layout
from facesets.contract.clustering import (
    ClusterParams,
    ExtendParams,
    ImportFoldersParams,
    RefineParams,
    RouteParams,
)
from facesets.contract.quality import QualityGate
from services import run_facesets

A, B, C = "George_W_Bush", "Colin_Powell", "Tony_Blair"
OPEN_GATES = {"gate": QualityGate(min_short=0.0, min_blur=0.0, min_det_score=0.0)}


@dataclass
class Scene:
    root: Path
    singles: list[Path]  # 5 photos each of A, B, C
    g_ab: Path
    g_aa: Path
    g_new: Path  # added to the store only by the extend test


@pytest.fixture(scope="module")
def scene(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    root = tmp_path_factory.mktemp("cannot_link")
    people = lfw_slice(lfw_dir, [A, B, C], 10)
    singles = []
    for person in (A, B, C):
        for photo in people[person][:5]:
            target = root / "photos" / person / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, target)
            singles.append(target)
    groups = root / "photos" / "groups"
    return Scene(
        root,
        singles,
        side_by_side(people[A][5], people[B][5], groups / "g_ab.jpg"),
        side_by_side(people[A][6], people[A][7], groups / "g_aa.jpg"),
        side_by_side(people[A][8], people[A][9], groups / "g_new.jpg"),
    )


def make_store(scene: Scene, path: Path, model_root: Path) -> FaceStore:
    store = new_store(path)
    add_photos(store, [*scene.singles, scene.g_ab, scene.g_aa], model_root)
    return store


@pytest.fixture(scope="module")
def store(scene: Scene, model_root: Path) -> FaceStore:
    return make_store(scene, scene.root / "store.sqlite", model_root)


def halves(store: FaceStore, photo: Path) -> tuple[int, int]:
    """Face ids of the main face in the left and in the right half of a group photo."""
    table = store.face_table()
    sha = sha256_of(photo)
    rows = [i for i, s in enumerate(table.sha256) if s == sha]
    width = 500.0
    area = {
        i: (table.bbox[i][2] - table.bbox[i][0]) * (table.bbox[i][3] - table.bbox[i][1])
        for i in rows
    }
    left = [i for i in rows if (table.bbox[i][0] + table.bbox[i][2]) / 2 < width / 2]
    right = [i for i in rows if i not in left]
    assert left and right, f"expected a face in each half of {photo.name}"
    pick = lambda side: int(table.face_id[max(side, key=area.__getitem__)])  # noqa: E731
    return pick(left), pick(right)


def person_of(manifest: dict, face_id: int) -> str | None:
    for person in manifest["persons"]:
        if face_id in person["face_ids"]:
            return str(person["name"])
    return None


def faceset_of(manifest: dict, face_id: int) -> str | None:
    for entry in manifest["facesets"]:
        if face_id in entry["face_ids"]:
            return str(entry["name"])
    return None


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_cluster_keeps_two_faces_of_one_photo_apart_unless_allowed(
    scene: Scene, store: FaceStore, tmp_path: Path
) -> None:
    left, right = halves(store, scene.g_aa)
    free = read(cluster(store, tmp_path / "free", ClusterParams(cannot_link=False)).manifest_path)
    assert person_of(free, left) is not None and person_of(free, left) == person_of(free, right)
    assert free["cannot_link"] == {"enabled": False, "merges_prevented": 0}

    outcome = cluster(store, tmp_path / "kept", ClusterParams())
    kept = read(outcome.manifest_path)
    assert person_of(kept, left) != person_of(kept, right)
    assert kept["cannot_link"]["enabled"] and kept["cannot_link"]["merges_prevented"] >= 1
    assert outcome.summary["merges_prevented"] == kept["cannot_link"]["merges_prevented"]
    table = store.face_table()
    sha_of = {int(f): s for f, s in zip(table.face_id, table.sha256, strict=True)}
    for person in kept["persons"]:
        photos = [sha_of[f] for f in person["face_ids"]]
        assert len(photos) == len(set(photos)), person["name"]


def refine_params(**changes: object) -> RefineParams:
    # merge_threshold 1.2: A's and B's clusters would merge by centroid; they share g_ab.
    base: dict = {"merge_threshold": 1.2, "min_faces": 3, **OPEN_GATES}
    return RefineParams(**(base | changes))


def test_refine_keeps_people_of_one_photo_apart_and_lists_them_as_lookalikes(
    scene: Scene, store: FaceStore, tmp_path: Path
) -> None:
    a_face, b_face = halves(store, scene.g_ab)
    free = read(refine(store, tmp_path / "free", refine_params(cannot_link=False)).manifest_path)
    assert faceset_of(free, a_face) is not None
    assert faceset_of(free, a_face) == faceset_of(free, b_face)
    assert free["lookalikes"] == []

    kept = read(refine(store, tmp_path / "kept", refine_params()).manifest_path)
    fa, fb = faceset_of(kept, a_face), faceset_of(kept, b_face)
    assert fa is not None and fb is not None and fa != fb
    assert kept["cannot_link"]["merges_prevented"] >= 1
    pairs = [sorted(p["facesets"]) for p in kept["lookalikes"]]
    assert sorted([fa, fb]) in pairs
    pair = kept["lookalikes"][pairs.index(sorted([fa, fb]))]
    assert sha256_of(scene.g_ab) in pair["shared_photos"]
    assert pair["distance"] <= 1.2 + 0.1
    for entry in kept["facesets"]:
        assert len(entry["face_ids"]) == len(entry["photos"])  # one face per photo


def test_route_never_adds_a_face_to_a_faceset_holding_its_photo(
    scene: Scene, store: FaceStore, tmp_path: Path
) -> None:
    # A faceset holding one face of g_aa (the other taken out by hand): routing g_aa again
    # offers the other face, whose nearest faceset is that one.
    refine(store, tmp_path / "base", refine_params(merge_threshold=0.4, cannot_link=False))
    manifest_path = tmp_path / "base" / layout.REFINE_MANIFEST
    base = read(manifest_path)
    left, right = halves(store, scene.g_aa)
    holder = faceset_of(base, left)
    assert holder is not None and faceset_of(base, right) == holder
    for entry in base["facesets"]:
        if entry["name"] == holder:
            entry["face_ids"].remove(right)
    manifest_path.write_text(json.dumps(base))
    results = {}
    for allowed in (False, True):
        folder = tmp_path / f"route_{allowed}"
        shutil.copytree(tmp_path / "base", folder, symlinks=True)
        outcome = route(
            store,
            folder,
            RouteParams(match_threshold=0.7, min_faces=99, cannot_link=not allowed, **OPEN_GATES),
            sha256=[sha256_of(scene.g_aa)],
        )
        results[allowed] = (read(folder / layout.REFINE_MANIFEST), outcome.summary)
    free, _ = results[True]
    assert faceset_of(free, right) == holder  # without the constraint it joins that faceset
    kept, summary = results[False]
    assert faceset_of(kept, right) is None
    assert summary["merges_prevented"] == 1
    assert kept["route_cannot_link"] == {"enabled": True, "merges_prevented": 1}


def test_extend_sends_one_face_of_a_new_photo_to_a_person_not_both(
    scene: Scene, model_root: Path, tmp_path: Path
) -> None:
    outs = {}
    for allowed in (False, True):
        grown = make_store(scene, tmp_path / f"store_{allowed}.sqlite", model_root)
        raw = tmp_path / f"raw_{allowed}"
        cluster(grown, raw, ClusterParams(cannot_link=not allowed))
        add_photos(grown, [scene.g_new], model_root)
        summary = extend(grown, raw, params=ExtendParams(cannot_link=not allowed)).summary
        outs[allowed] = (read(raw / layout.CLUSTER_MANIFEST), halves(grown, scene.g_new), summary)
    free, (left, right), _ = outs[True]
    assert person_of(free, left) is not None and person_of(free, left) == person_of(free, right)
    kept, (left, right), summary = outs[False]
    assert person_of(kept, left) != person_of(kept, right)
    # (g_aa may already have split A in two, so each face can find its own A person.)
    assert kept["extend"]["cannot_link"] == {
        "enabled": True,
        "merges_prevented": summary["merges_prevented"],
    }


def test_import_folders_sends_one_face_of_a_group_photo_to_an_identity_not_both(
    scene: Scene, store: FaceStore, tmp_path: Path
) -> None:
    trusted = [Trusted(p, scene.root / "photos" / p) for p in (A, B, C)]
    mixed = [scene.g_aa.parent]
    plans = {}
    for allowed in (False, True):
        export = tmp_path / f"export_{allowed}"
        params = ImportFoldersParams(match_threshold=0.6, cannot_link=not allowed)
        summary = import_folders(store, export, trusted, mixed, params).summary
        plan = read(export / layout.IMPORT_FOLDERS_DIR / layout.REFINE_MANIFEST)
        plans[allowed] = ({e["label"]: set(e["face_ids"]) for e in plan["facesets"]}, summary)
    left, right = halves(store, scene.g_aa)
    free, summary = plans[True]
    assert {left, right} <= free[A]
    assert summary["cannot_link"] == {"enabled": False, "merges_prevented": 0}
    kept, summary = plans[False]
    assert len({left, right} & kept[A]) == 1  # the closer of the two joins A
    assert summary["cannot_link"]["merges_prevented"] >= 1
    a_face, b_face = halves(store, scene.g_ab)  # two people: each joins their own
    assert a_face in kept[A] and b_face in kept[B] and a_face not in kept[B]


def test_export_and_report_show_the_lookalike_pairs_with_crops(
    scene: Scene, store: FaceStore, tmp_path: Path
) -> None:
    refined = tmp_path / "refined"
    refine(store, refined, refine_params())
    pairs = read(refined / layout.REFINE_MANIFEST)["lookalikes"]
    assert pairs
    out = tmp_path / "export"
    done = run_facesets(
        "export-swap", str(store.path), str(refined / layout.REFINE_MANIFEST), str(out),
        "--min-face-short", "0", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    top = read(out / layout.EXPORT_MANIFEST)
    listed = top["lookalikes"]
    assert [p["facesets"] for p in listed] == [p["facesets"] for p in pairs]
    for pair in listed:
        for name in pair["facesets"]:
            crops = pair["crops"][name]
            assert 1 <= len(crops) <= 4
            assert all((out / rel).is_file() for rel in crops)
    html = "".join(p.read_text() for p in out.rglob("*.html"))
    assert 'data-section="lookalikes"' in html or "Look-alike pairs" in html
    first = listed[0]
    assert all(name in html for name in first["facesets"])
    assert any(rel.split("/")[-1] in html for rel in first["crops"][first["facesets"][0]])
