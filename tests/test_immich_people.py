"""Immich's named people through `facesets immich stage` and `facesets immich import --people`,
against a fake Immich server and real services.

The fake serves people and asset faces as Immich does; the shapes were checked against
immich-app/immich server/src/dtos/person.dto.ts at commit 003b40b8 (PersonResponseDto,
AssetFaceResponseDto with boundingBoxX1..Y2 in imageWidth x imageHeight, PeopleResponseDto
{total, hidden, people, hasNextPage}, PersonSearchDto withHidden/page/size).

The library: four named people in "Immich": 'Colin Powell' wrongly holding Hugo Chavez's
faces too (a merge), 'Tony Blair', and Donald Rumsfeld named twice ('Donald Rumsfeld' and
'Rummy'); Gerhard Schroeder is named but hidden, Hugo Chavez's other photos an unnamed person.
One photo shows Colin Powell twice, both faces given to him (split by cannot-link).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_immich import FakeImmich, FakePerson, lfw_asset, lfw_pair_asset

from facesets.contract.layout import read_json
from services import ServiceProcess, run_facesets, service_flags

KEY = "people-test-key-0001"
PER = 5


def facesets(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMMICH_URL": url, "IMMICH_API_KEY": KEY, **env}
    return run_facesets("immich", *args, env=env)


def importing(
    module_services: dict[str, ServiceProcess], *args: str
) -> subprocess.CompletedProcess[str]:
    """`facesets immich import ARGS` through the module's services (no Immich call)."""
    return facesets(
        "http://127.0.0.1:9", "import", *args, *service_flags(module_services, "import")
    )


def library(lfw: Path, named: bool) -> tuple[list, list[FakePerson]]:
    """The fake library: assets with their Immich person, and the people (named or not)."""

    def photos(person: str, start: int, count: int) -> list[Path]:
        return sorted((lfw / person).glob("*.jpg"))[start : start + count]

    plan = [  # (LFW person, first photo, photos, Immich person key)
        ("Colin_Powell", 0, PER, "colin"),
        ("Hugo_Chavez", 0, 4, "colin"),  # Immich merged Hugo Chavez into Colin Powell
        ("Hugo_Chavez", 4, PER, "hugo"),  # an unnamed person: a hint with --people all
        ("Tony_Blair", 0, PER, "tony"),
        ("Donald_Rumsfeld", 0, PER, "donald"),
        ("Donald_Rumsfeld", PER, PER, "rummy"),  # the same man named a second time
        ("Gerhard_Schroeder", 0, PER, "gerhard"),  # an unnamed Immich person
    ]
    assets = []
    for person, start, count, key in plan:
        for photo in photos(person, start, count):
            assets.append(lfw_asset(photo, index=len(assets), person=key if named else None))
    left, right = sorted((lfw / "Colin_Powell").glob("*.jpg"))[PER : PER + 2]
    pair = ["colin", "colin"] if named else None
    assets.append(lfw_pair_asset(left, right, index=len(assets), people=pair))
    names = {"colin": "Colin Powell", "tony": "Tony Blair", "donald": "Donald Rumsfeld"}
    names["rummy"] = "Rummy"
    people = [FakePerson(key, name) for key, name in names.items()]
    people.append(FakePerson("gerhard", "Gerhard Schroeder", is_hidden=True))  # never seeds
    people.append(FakePerson("hugo"))
    return assets, people


def import_json(module_services: dict[str, ServiceProcess], *args: str) -> dict[str, Any]:
    done = importing(module_services, *args, "--min-faces", "4", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def exported(out: Path) -> dict[str, dict[str, Any]]:
    """Exported faceset entry name -> its own manifest."""
    top = read_json(out / "manifest.json")
    return {name: read_json(out / entry["manifest"]) for name, entry in top["facesets"].items()}


def labels(manifest: dict[str, Any]) -> Counter[str]:
    """LFW people of an exported faceset's crops (each staged under its LFW folder)."""
    return Counter(Path(crop["source"]).parent.name for crop in manifest["crops"])


def test_stage_reads_people_and_faces_resumably(lfw_dir, tmp_path):
    """People page by page (hidden ones too), each staged asset's faces with their person and
    their box in the preview's pixels; a state from before faces were kept gets them on the
    next run without a download."""
    colin = sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))
    assets = [lfw_asset(p, index=i, person="colin") for i, p in enumerate(colin[:2])]
    assets.append(lfw_pair_asset(colin[2], colin[3], index=2, people=["colin", "other"]))
    people = [FakePerson("colin", "Colin Powell"), FakePerson("other", "", is_hidden=True)]
    stage = ["stage", "--user", "alice", "--staging-root", str(tmp_path), "--no-progress"]
    with FakeImmich(assets, KEY, people=people, preview_size=100) as fake:
        done = facesets(fake.url, *stage, FACESETS_IMMICH__PEOPLE_PAGE_SIZE="1")
        assert done.returncode == 0, done.stderr
        assert "people in Immich                2" in done.stdout
        assert fake.requests["people"] == 2  # one person a page, hasNextPage followed
        state_path = tmp_path / "alice" / "state.json"
        state = read_json(state_path)
        assert state["people"] == {
            fake.person_of("colin").id: {
                "name": "Colin Powell",
                "is_hidden": False,
                "birth_date": None,
            },
            fake.person_of("other").id: {"name": "", "is_hidden": True, "birth_date": None},
        }
        pair = next(r for r in state["assets"].values() if len(r["faces"]) == 2)
        # The preview of a 500x250 photo whose short edge is 100: boxes in 200x100.
        assert [f["image_width"] for f in pair["faces"]] == [200, 200]
        assert pair["faces"][1]["box"] == [132.0, 25.0, 172.0, 78.0]
        assert [f["person_id"] for f in pair["faces"]] == [
            fake.person_of("colin").id,
            fake.person_of("other").id,
        ]
        # A state written before faces were kept: the next run asks for faces only.
        faces = {asset_id: r.pop("faces") for asset_id, r in state["assets"].items()}
        state_path.write_text(json.dumps(state))
        downloads = sum(fake.original_requests.values())
        again = facesets(fake.url, *stage)
        assert again.returncode == 0, again.stderr
        assert {a: r["faces"] for a, r in read_json(state_path)["assets"].items()} == faces
        # Faces given to another person in Immich: read again on --refresh-faces only.
        for asset in fake.assets.values():
            if asset.person == "colin":
                asset.person = "other"
        assert facesets(fake.url, *stage).returncode == 0
        assert {a: r["faces"] for a, r in read_json(state_path)["assets"].items()} == faces
        assert facesets(fake.url, *stage, "--refresh-faces").returncode == 0
        persons = [
            f["person_id"] for r in read_json(state_path)["assets"].values() for f in r["faces"]
        ]
        assert persons.count(fake.person_of("other").id) == 3  # two photos moved, one was there
        assert sum(fake.original_requests.values()) == downloads


@pytest.mark.slow
def test_named_people_seed_name_and_check_facesets(lfw_dir, tmp_path, module_services):
    staging = tmp_path / "staging"
    store = tmp_path / "faces.db"
    common = ["--staging-root", str(staging), "--store", str(store)]
    stage = ["--staging-root", str(staging)]
    assets, people = library(lfw_dir, named=True)
    keys = {"Colin Powell": "colin", "Tony Blair": "tony", "Donald Rumsfeld": "donald"}
    keys["Rummy"] = "rummy"
    with FakeImmich(assets, KEY, people=people) as fake:
        staged = facesets(fake.url, "stage", "--user", "alice", *stage, "--no-progress")
        assert staged.returncode == 0, staged.stderr
        assert fake.requests["people"] == 1
        state = read_json(staging / "alice" / "state.json")
        assert {p["name"] for p in state["people"].values()} == {
            "Colin Powell",
            "Tony Blair",
            "Donald Rumsfeld",
            "Rummy",
            "Gerhard Schroeder",
            "",
        }
        faces = [f for r in state["assets"].values() for f in r.get("faces", [])]
        assert len(faces) == len(assets) + 1 and all(f["image_width"] > 0 for f in faces)

        first = importing(module_services, "--user", "alice", *common, "--min-faces", "4")
        assert first.returncode == 0, first.stderr
        out = staging / "alice" / "export"
        sets = exported(out)
        named = {m["name"]: (n, m) for n, m in sets.items() if m.get("name")}
        # 1. Named facesets carry their names: folder, manifest, .fsz files.
        assert set(named) == {"Colin Powell", "Tony Blair", "Donald Rumsfeld", "Rummy"}
        for person, (name, manifest) in named.items():
            slug = person.lower().replace(" ", "-")
            assert name.endswith("_" + slug) and name.startswith("faceset_")
            assert (out / name).is_dir()
            assert Path(manifest["fsz_all"]).name == f"{name}_all.fsz"
            assert manifest["immich_person_id"] == fake.person_of(keys[person]).id
        # 2. Purity of the named sets by LFW label.
        for _, manifest in named.values():
            counts = labels(manifest)
            assert counts and counts.most_common(1)[0][1] / sum(counts.values()) >= 0.99, counts
        assert set(labels(named["Colin Powell"][1])) == {"Colin_Powell"}
        # ... and of every face the named facesets hold (most crops fall to export's size gate).
        label_of = {a.sha256: a.original_path.split("/")[-2] for a in assets}
        refine = read_json(staging / "alice" / "facesets" / "refine_manifest.json")
        for entry in refine["facesets"]:
            if entry.get("immich_person", {}).get("name"):
                held = Counter(label_of[sha] for sha in entry["photos"])
                assert held.most_common(1)[0][1] / sum(held.values()) >= 0.99, (entry["name"], held)
                assert sum(held.values()) >= PER - 1
        # 3. The merge and the double naming are reported, with strips of crops.
        top = read_json(out / "manifest.json")
        found = top["immich_disagreements"]
        kinds = Counter(item["kind"] for item in found)
        merged = [i for i in found if i["kind"] == "immich_merged"]
        assert [i["person"] for i in merged] == ["Colin Powell"], found
        assert len(merged[0]["face_ids"]) == 4
        twice = [i for i in found if i["kind"] == "immich_named_twice"]
        assert [sorted(i["people"]) for i in twice] == [["Donald Rumsfeld", "Rummy"]], kinds
        split = [i for i in found if i["kind"] == "immich_split"]
        assert [(i["person"], len(i["face_ids"])) for i in split] == [("Colin Powell", 1)]
        for item in found:
            assert (out / item["file"]).is_file()
        page = (out / "report" / "index.html").read_text()
        assert "Immich disagreements" in page and "named twice" in page
        assert all(item["file"] in page for item in found)
        # The import's summary lists them, each with its strip.
        assert "disagreements with Immich  3" in first.stdout
        assert "merged: 'Colin Powell' has 4 face(s)" in first.stdout
        assert "named twice: 'Donald Rumsfeld' and 'Rummy'" in first.stdout
        assert all(item["file"] in first.stdout for item in found)
        # Hugo Chavez's faces, left out of Colin Powell's set, make an identity of their own.
        hugo = [m for m in sets.values() if labels(m).most_common(1)[0][0] == "Hugo_Chavez"]
        assert len(hugo) == 1 and not hugo[0].get("name")

        # 4. A rename in Immich, then stage and import again: renamed, not renumbered.
        tony_name, tony = named["Tony Blair"]
        fake.people["tony"].name = "Tony B. Blair"
        again = facesets(fake.url, "stage", "--user", "alice", *stage, "--no-progress")
        assert again.returncode == 0, again.stderr
    import_json(module_services, "--user", "alice", *common)
    after = exported(out)
    renamed = {m["name"]: (n, m) for n, m in after.items() if m.get("name")}
    new_name, new_manifest = renamed["Tony B. Blair"]
    assert new_manifest["number"] == tony["number"]
    assert new_name == f"faceset_{tony['number']:03d}_tony-b-blair"
    assert new_manifest["immich_person_id"] == tony["immich_person_id"]
    assert not (out / tony_name).exists() and (out / new_name).is_dir()
    assert {n: m["number"] for n, m in after.items() if n != new_name} == {
        n: m["number"] for n, m in sets.items() if n != tony_name
    }
    assert sorted(labels(new_manifest)) == sorted(labels(tony))

    # 5. --people none gives what the import gave before Immich's people were read: the same
    # photos staged with no people at all, imported as before.
    none_out, none_sets = tmp_path / "none-out", tmp_path / "none-sets"
    ignored = import_json(module_services, "--user", "alice", *common, "--people", "none",
        "--facesets-dir", str(none_sets), "--out", str(none_out),
    )  # fmt: skip
    plain_assets, _ = library(lfw_dir, named=False)
    with FakeImmich(plain_assets, KEY) as fake:
        staged = facesets(fake.url, "stage", "--user", "bob", *stage, "--no-progress")
        assert staged.returncode == 0, staged.stderr
    plain = import_json(module_services, "--user", "bob", *common)
    assert ignored["immich_disagreements"] == plain["immich_disagreements"] == []
    refine = read_json(none_sets / "refine_manifest.json")
    before = read_json(staging / "bob" / "facesets" / "refine_manifest.json")
    assert [(e["name"], e["face_ids"]) for e in refine["facesets"]] == [
        (e["name"], e["face_ids"]) for e in before["facesets"]
    ]
    assert "immich_disagreements" not in read_json(none_out / "manifest.json")
    assert sorted(p.name for p in none_out.rglob("*.fsz")) == sorted(
        p.name for p in (staging / "bob" / "export").rglob("*.fsz")
    )

    # 6. People named after an import: the facesets that hold their faces take their names,
    # numbers kept (stage --refresh-faces reads the faces' people again).
    bob_out = staging / "bob" / "export"
    plain_sets = exported(bob_out)
    tony_plain = next(n for n, m in plain_sets.items() if set(labels(m)) == {"Tony_Blair"})
    with FakeImmich(assets, KEY, people=people) as fake:
        again = facesets(
            fake.url, "stage", "--user", "bob", *stage, "--no-progress", "--refresh-faces"
        )
        assert again.returncode == 0, again.stderr
    import_json(module_services, "--user", "bob", *common, "--people", "all")
    adopted = exported(bob_out)
    # --people all: the unnamed person takes the faceset of its faces too, its name still plain.
    hugo_id = fake.person_of("hugo").id
    hugo_sets = [(n, m) for n, m in adopted.items() if m.get("immich_person_id") == hugo_id]
    assert [(n, m["name"]) for n, m in hugo_sets] == [
        (next(n for n, m in plain_sets.items() if "Hugo_Chavez" in labels(m)), "")
    ]
    tony_named = next(n for n, m in adopted.items() if m.get("name") == "Tony B. Blair")
    assert tony_named == tony_plain + "_tony-b-blair"
    assert not (bob_out / tony_plain).exists()
    assert {m["number"] for m in adopted.values()} >= {m["number"] for m in plain_sets.values()}
    # The plain Rumsfeld faceset became 'Donald Rumsfeld': 'Rummy', whose faces it holds, is
    # reported as the same person named twice.
    twice = read_json(bob_out / "manifest.json")["immich_disagreements"]
    assert any(
        i["kind"] == "immich_named_twice" and sorted(i["people"]) == ["Donald Rumsfeld", "Rummy"]
        for i in twice
    ), twice
