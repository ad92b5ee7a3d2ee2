"""Era splits end to end on real photos: `facesets age probe|split|extend` on dated LFW copies.

One LFW person does not split by age, so the identity spanning decades is made of several
people, hand-sorted into one folder (`import-folders`, one trusted folder = one faceset) and
dated by EXIF DateTimeOriginal:

    A  Gerhard_Schroeder 0001-0012  1995-1997 (dominant 1996)  an anchor
    B  Serena_Williams   0001-0012  2014-2016 (dominant 2015)  an anchor
    C  John_Ashcroft     4 photos   1999                       a fragment 3 years from A
    D  Vladimir_Putin    4 photos   2005                       a fragment 10 years from B
    A+ Gerhard_Schroeder 0013, 0015-0017  1998                 added later, for `age extend`

and a second trusted folder holds one person in one year (Junichiro_Koizumi 0001-0010, 2005).
Every photo chosen holds one detected face, and every face passes the default quality gate.

The thresholds: the mini pack's 128-d embeddings put faces of one person 0.27-0.37 apart on
average (0.53 at most) and different people 0.80-1.22 apart (average pairwise distance), far
above buffalo_l's scale that the defaults (0.55/0.50/0.35/0.40) are made for. Measured with the
mini pack on these photos, the centroid distances are C-A 0.724 (C-B 1.032), D-B 0.862 (D-A
1.172), A-B 1.179; the later A photos lie 0.043 from A's centroid; every face lies within 0.93
of the centroid of all 32. Hence:
- `--recover-threshold 1.5 --tighten-threshold 1.5`, and the import's outlier passes at 1.2:
  the whole folder is one identity (only the folder limits the recovery);
- `--sub-threshold 0.6`: average linkage keeps the four people apart and each in one piece
  (the same four sub-clusters at every cut from 0.45 to 0.80);
- `--join-threshold 0.95`: both fragments lie within it of their nearest anchor (C 0.724 from
  A, D 0.862 from B), so what keeps D apart is the ±5-year rule alone;
- `--anchor-min-faces 8`: the 12-photo people are anchors, the 4-photo fragments are not;
- the export's own gates, `--outlier-threshold 1.5 --min-face-short 0` (for the faceset, by
  `export-swap` of the import's plan, and for the eras): at 0.45 from the centroid the export
  would drop every face of a mixed identity but one person's, and LFW's faces are 90-110 px
  (the split's quality gate, 90 px, has already chosen them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dated_photos import dated_copy

from facesets.clustering.store import FaceStore
from facesets.contract import layout
from services import ServiceProcess, run_facesets, service_flags

A, B, C, D = "Gerhard_Schroeder", "Serena_Williams", "John_Ashcroft", "Vladimir_Putin"
ONE_YEAR = "Junichiro_Koizumi"
FACESET = "faceset_001"  # the decades folder; faceset_002 is the one-year folder

# (person, photo numbers, capture years in turn)
DECADES = (
    (A, range(1, 13), (1995, 1995, 1995, 1995, 1996, 1996, 1996, 1996, 1996, 1997, 1997, 1997)),
    (B, range(1, 13), (2014, 2014, 2014, 2015, 2015, 2015, 2015, 2015, 2015, 2016, 2016, 2016)),
    (C, (1, 4, 5, 6), (1999,)),
    (D, (1, 2, 3, 4), (2005,)),
)
LATER = (A, (13, 15, 16, 17), (1998,))  # 0014 also shows a second, smaller face

EXPORT_GATES = ("--outlier-threshold", "1.5", "--min-face-short", "0")
WIDE = (
    "--recover-threshold", "1.5",
    "--tighten-threshold", "1.5",
    "--sub-threshold", "0.6",
    "--join-threshold", "0.95",
    "--anchor-min-faces", "8",
    *EXPORT_GATES,
)  # fmt: skip
PROBE = ("--sub-threshold", "0.6", "--anchor-min-faces", "8")


def copy_dated(lfw: Path, folder: Path, person: str, numbers: Any, years: tuple[int, ...]) -> None:
    for i, number in enumerate(numbers):
        name = f"{person}_{number:04d}.jpg"
        year = years[i % len(years)]
        dated_copy(lfw / person / name, folder / name, f"{year}:{1 + i % 12:02d}:15 12:00:00")


def ok(module_services: dict[str, ServiceProcess], *args: str) -> dict[str, Any]:
    done = run_facesets(*args, "--json", *service_flags(module_services, *args[:2]))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@dataclass
class Eras:
    export: Path
    probes: dict[str, dict[str, Any]]  # faceset -> probe summary
    split: dict[str, Any]  # summary of `age split`
    planned: dict[str, Any]  # the era plan after the split
    top: dict[str, Any]  # the export's manifest after the split
    extended: dict[str, Any]  # summary of `age extend`
    replanned: dict[str, Any]  # the era plan after extend
    people: dict[int, str]  # face id -> LFW person
    later: set[int]  # face ids of the photos added before extend

    def persons(self, plan: dict[str, Any]) -> dict[str, set[str]]:
        """Per era of a plan, the people its faces show."""
        return {e["name"]: {self.people[f] for f in e["face_ids"]} for e in plan["facesets"]}

    def era_of(self, plan: dict[str, Any], person: str) -> dict[str, Any]:
        (era,) = [e for e in plan["facesets"] if person in self.persons(plan)[e["name"]]]
        return dict(era)


@pytest.fixture(scope="module")
def eras(
    lfw_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    module_services: dict[str, ServiceProcess],
) -> Eras:
    """import-folders, both probes, split; then more photos of A embedded, and extend."""
    root = tmp_path_factory.mktemp("eras")
    decades, one_year = root / "photos" / "decades", root / "photos" / "one_year"
    for person, numbers, years in DECADES:
        copy_dated(lfw_dir, decades, person, numbers, years)
    copy_dated(lfw_dir, one_year, ONE_YEAR, range(1, 11), (2005,))
    config = root / "folders.toml"
    config.write_text(
        f'[[trusted]]\nlabel = "Decades"\nfolder = "{decades}"\n'
        f'[[trusted]]\nlabel = "One year"\nfolder = "{one_year}"\n'
        "[thresholds]\nfirst_pass = 1.2\nsecond_pass = 1.2\n"
    )
    store, export = root / layout.RUN_STORE, root / "export"
    imported = ok(
        module_services, "import-folders", str(store), str(export), "--config", str(config)
    )
    assert imported["numbers"] == {"Decades": 1, "One year": 2}, imported
    # Its export, again past the export's own gates at the mini pack's scale.
    plan = export / layout.IMPORT_FOLDERS_DIR / layout.REFINE_MANIFEST
    ok(module_services, "export-swap", str(store), str(plan), str(export), *EXPORT_GATES)

    probes = {
        n: ok(module_services, "age", "probe", str(export), n, *PROBE)
        for n in (FACESET, "faceset_002")
    }
    split = ok(module_services, "age", "split", str(export), FACESET, *WIDE)
    planned = layout.read_json(export / "_eras" / f"{FACESET}.json")
    top = layout.read_json(export / layout.EXPORT_MANIFEST)

    person, numbers, years = LATER
    copy_dated(lfw_dir, decades / "later", person, numbers, years)
    ok(module_services, "embed", str(decades / "later"), str(store))
    extended = ok(module_services, "age", "extend", str(export), FACESET, *WIDE)
    replanned = layout.read_json(export / "_eras" / f"{FACESET}.json")

    faces = FaceStore(store)
    try:
        paths = {row.sha256: Path(row.path) for row in faces.images()}
        table = faces.face_table(with_embeddings=False)
    finally:
        faces.close()
    source = {int(f): paths[sha] for f, sha in zip(table.face_id, table.sha256, strict=True)}
    return Eras(
        export=export,
        probes=probes,
        split=split,
        planned=planned,
        top=top,
        extended=extended,
        replanned=replanned,
        people={f: p.stem[:-5] for f, p in source.items()},
        later={f for f, p in source.items() if p.parent.name == "later"},
    )


def test_probe_says_sortable_on_the_decades_and_not_on_one_year(eras: Eras) -> None:
    decades = eras.probes[FACESET]
    assert decades["sortable"], decades["why"]
    assert decades["subcluster_sizes"]["0.60"] == [12, 12, 4, 4]
    anchors = [g["years"]["dominant"] for g in decades["subcluster_years"] if g["faces"] >= 8]
    assert sorted(anchors) == [1996, 2015]
    one = eras.probes["faceset_002"]
    assert not one["sortable"] and one["subcluster_sizes"]["0.60"] == [10]
    assert one["subcluster_years"][0]["years"]["first"] == 2005
    assert one["subcluster_years"][0]["years"]["last"] == 2005


def test_split_makes_each_anchor_an_era_named_by_its_years(eras: Eras) -> None:
    """Sub-clusters of at least --anchor-min-faces faces are anchors, each exported as an era
    whose `<era>.txt` names its years; the one-year folder is not under the roots."""
    plan, export = eras.planned, eras.export
    assert sorted(eras.split["subclusters"]) == [4, 4, 12, 12]
    era_a, era_b = eras.era_of(plan, A), eras.era_of(plan, B)
    assert era_a["anchor"] and era_b["anchor"]
    assert era_a["name"] == "faceset_001_era_01" and era_b["name"] == "faceset_001_era_03"
    assert era_a["years"]["dominant"] == 1996 and era_a["label"] == "1995-1999"
    assert era_b["years"]["dominant"] == 2015 and era_b["label"] == "2014-2016"
    assert eras.persons(plan)[era_b["name"]] == {B} and len(era_b["face_ids"]) == 12
    assert set(eras.top["eras"]) == {era_a["name"], era_b["name"]}
    assert eras.top["facesets"].keys() == {FACESET, "faceset_002"}  # facesets untouched
    for era in (era_a, era_b):
        entry = eras.top["eras"][era["name"]]
        folder = export / entry["dir"]
        assert entry["dir"] == era["name"] and not (folder / "THIN.txt").exists()
        text = (folder / f"{era['name']}.txt").read_text()
        assert f"capture years {era['label']}" in text and str(era["years"]["dominant"]) in text
        assert (export / entry["fsz_all"]).is_file() and (export / entry["fsz_top"]).is_file()
    assert ONE_YEAR not in {p for people in eras.persons(plan).values() for p in people}


def test_a_close_fragment_within_five_years_joins_its_nearest_anchor(eras: Eras) -> None:
    plan = eras.planned
    era_a = eras.era_of(plan, A)
    assert eras.era_of(plan, C)["name"] == era_a["name"]
    assert eras.persons(plan)[era_a["name"]] == {A, C} and len(era_a["face_ids"]) == 16
    (joined,) = era_a["joined"]
    assert joined["decision"] == "joined" and joined["year"] == 1999 and joined["faces"] == 4
    assert joined["nearest_anchor_distance"] < 0.95
    crops = layout.read_json(eras.export / eras.top["eras"][era_a["name"]]["manifest"])["crops"]
    assert {Path(c["source"]).stem[:-5] for c in crops} == {A, C}


def test_a_fragment_years_from_its_anchor_stays_a_thin_era(eras: Eras) -> None:
    """D lies within the join distance of its nearest anchor (B) but 10 years from it: it
    stays standalone, under 8 faces: thin, in _thin/ with THIN.txt, listed in thin_eras."""
    plan, export = eras.planned, eras.export
    era_d = eras.era_of(plan, D)
    assert not era_d["anchor"] and eras.persons(plan)[era_d["name"]] == {D}
    assert era_d["name"] == "faceset_001_era_02" and era_d["label"] == "2005"
    (decision,) = [d for d in eras.split["fragments"] if d["year"] == 2005]
    assert decision["decision"] == "standalone" and decision["nearest_anchor_distance"] < 0.95
    assert "2005 vs anchor's 2015: > 5 years" in decision["why"]
    assert set(eras.top["thin_eras"]) == {era_d["name"]}
    entry = eras.top["thin_eras"][era_d["name"]]
    assert entry["dir"] == f"_thin/{era_d['name']}"
    assert "fewer than 8" in (export / entry["dir"] / "THIN.txt").read_text()
    assert "capture years 2005" in (export / entry["dir"] / f"{era_d['name']}.txt").read_text()
    assert not (export / era_d["name"]).exists()


def test_extend_slots_new_photos_into_their_era_without_renumbering(eras: Eras) -> None:
    assert eras.extended["new_faces"] == 4 and len(eras.later) == 4
    before = {e["name"]: e for e in eras.planned["facesets"]}
    after = {e["name"]: e for e in eras.replanned["facesets"]}
    assert after.keys() == before.keys()
    for name, era in before.items():
        assert after[name]["number"] == era["number"] and after[name]["dir"] == era["dir"]
        assert set(era["face_ids"]) <= set(after[name]["face_ids"])
    era_a = eras.era_of(eras.replanned, A)
    assert set(era_a["face_ids"]) - set(before[era_a["name"]]["face_ids"]) == eras.later
    assert era_a["label"] == "1995-1999" and era_a["joined"][-1]["year"] == 1998
    for name in before:
        if name != era_a["name"]:
            assert after[name]["face_ids"] == before[name]["face_ids"]
    top = layout.read_json(eras.export / layout.EXPORT_MANIFEST)
    assert top["eras"].keys() == eras.top["eras"].keys()
    assert top["thin_eras"].keys() == eras.top["thin_eras"].keys()
    crops = layout.read_json(eras.export / top["eras"][era_a["name"]]["manifest"])["crops"]
    assert {Path(c["source"]).parent.name for c in crops} == {"decades", "later"}
