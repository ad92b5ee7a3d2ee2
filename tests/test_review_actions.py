"""The review decisions as export maintenance runs (RejectCrops, Split, Name, MarkDifferent):
each keeps the .fsz files equal to the folders, and `restore` puts back every byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from maintenance_export import assert_fsz_match_folders, build_export, pngs, snapshot

from facesets.contract import layout
from facesets.export.errors import ExportError
from facesets.export.maintenance import review_actions, runs
from facesets.export.maintenance.restore import restore


@pytest.fixture
def export(tmp_path: Path) -> Path:
    sets = {0: pngs(5, 1, "a"), 1: pngs(4, 2, "b"), 2: pngs(3, 3, "c")}
    out = build_export(tmp_path / "export", sets)
    manifest = runs.read_export(out)
    manifest.extra["lookalikes"] = [{"facesets": ["faceset_000", "faceset_001"], "distance": 0.4}]
    for number, name in enumerate(("faceset_000", "faceset_001", "faceset_002")):
        inner = runs.faceset_manifest(out, name)
        assert inner is not None
        for i, crop in enumerate(inner.crops):
            crop["face_id"] = number * 100 + i
        runs.write_faceset_manifest(out, name, inner)
    runs.write_manifest(out, manifest)
    return out


def faceset_json(out: Path, name: str) -> dict:
    inner = runs.faceset_manifest(out, name)
    assert inner is not None
    return inner.to_json()


def files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != layout.WRITER_LOCK and "maintenance_runs" not in p.name
    }


def without_runs(out: Path) -> dict:
    manifest = runs.read_manifest(out)
    manifest.pop(layout.MAINTENANCE_RUNS, None)
    manifest.pop("review_run", None)
    return manifest


def test_reject_split_name_different_and_restore_each(export: Path, tmp_path: Path) -> None:
    before = snapshot(export)

    done = review_actions.reject(export, "faceset_000", ("a01.png",))
    assert not (export / "faceset_000/faces/a01.png").exists()
    assert (export / "faceset_000/faces/_dropped/a01.png").exists()
    assert assert_fsz_match_folders(export) == 6
    restore(export, run_id=done.run.id)
    assert snapshot(export) == before
    # (a restored reject leaves an empty `dropped` count behind: compare from here)
    inners = {n: faceset_json(export, n) for n in ("faceset_000", "faceset_001")}
    master = without_runs(export)

    done = review_actions.split(export, "faceset_000", ("a02.png", "a03.png"))
    assert done.into == "faceset_003"
    assert sorted(p.name for p in (export / "faceset_003/faces").glob("*.png")) == [
        "a02.png",
        "a03.png",
    ]
    new = faceset_json(export, "faceset_003")
    assert [c["face_id"] for c in new["crops"]] == [2, 3]
    assert "faceset_003" in runs.read_manifest(export)["facesets"]
    assert assert_fsz_match_folders(export) == 8
    restore(export, run_id=done.run.id)
    assert snapshot(export) == before and not (export / "faceset_003").exists()
    assert {n: faceset_json(export, n) for n in inners} == inners

    done = review_actions.split(export, "faceset_000", ("a04.png",), into="faceset_002")
    assert (export / "faceset_002/faces/a04.png").exists()
    assert assert_fsz_match_folders(export) == 6
    with pytest.raises(ExportError, match="at least one crop"):
        review_actions.split(export, "faceset_002", ("c00.png", "c01.png", "c02.png", "a04.png"))
    restore(export, run_id=done.run.id)
    assert snapshot(export) == before

    done = review_actions.name(export, "faceset_001", "Jane Doe")
    assert sorted(p.name for p in (export / "faceset_001").glob("*.fsz")) == [
        "Jane_Doe_all.fsz",
        "Jane_Doe_top3.fsz",
    ]
    assert runs.read_manifest(export)["facesets"]["faceset_001"]["label"] == "Jane Doe"
    assert faceset_json(export, "faceset_001")["label"] == "Jane Doe"
    assert assert_fsz_match_folders(export) == 6
    restore(export, run_id=done.run.id)
    assert snapshot(export) == before

    store = tmp_path / "faces.db"
    done = review_actions.mark_different(export, "faceset_001", "faceset_000", store)
    assert runs.read_manifest(export)["lookalikes"] == []
    links = json.loads(Path(str(store) + layout.CANNOT_LINK_SUFFIX).read_text())
    assert links["exports"][str(export)] == [[[100, 101, 102, 103], [0, 1, 2, 3, 4]]]
    restore(export, run_id=done.run.id)
    assert len(runs.read_manifest(export)["lookalikes"]) == 1
    links = json.loads(Path(str(store) + layout.CANNOT_LINK_SUFFIX).read_text())
    assert links["exports"] == {}
    assert without_runs(export) == master
    assert snapshot(export) == before


def test_refusals_name_no_path(export: Path) -> None:
    for call, message in (
        (lambda: review_actions.reject(export, "faceset_000", ("../x.png",)), "not a crop"),
        (lambda: review_actions.reject(export, "faceset_009", ("a01.png",)), "no faceset"),
        (lambda: review_actions.split(export, "faceset_000", ("b01.png",)), "not a crop"),
    ):
        with pytest.raises(ExportError, match=message):
            call()
    with pytest.raises(ValueError, match="usable name"):
        review_actions.name(export, "faceset_000", "../etc")


def test_consolidate_groups_keep_facesets_marked_different_apart() -> None:
    from facesets.clustering.different_people import apart

    faces = [{1, 2}, {3, 4}, {5}, {6}]
    groups = [[0, 1, 2], [3]]
    assert apart(groups, faces, []) == groups
    # 0 and 1 are two people: 2 stays with 0, 1 is left alone (not a merge)
    assert apart(groups, faces, [([2], [4])]) == [[0, 2]]
    assert apart([[1, 0, 2]], faces, [([1], [3])]) == [[1, 2]]
