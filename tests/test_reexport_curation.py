"""What a person decided on an export survives `facesets export-swap` run again over it (after
`route` or `extend` added faces, or the same `facesets run` again). It did not: the rejected
crop came back into its faceset, the merged faceset reappeared beside its target, the crops a
merge or split brought into a faceset left its .fsz and manifest (their PNGs orphaned), and a
name given in review stopped naming the .fsz files. Decisions are made as a user makes them:
in the review app (its HTTP actions, CSRF token and all) and with `facesets merge`. The
review app's marks of different people go to the store the export came from, no other; and
an export after a maintenance run a crash cut short rolls that run back first."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from review_export import ReviewApp, build_lfw_export

from facesets.contract import layout
from services import ServiceProcess, copy_store, killed_at, run_facesets, running_services


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path, model_root: Path) -> dict:
    root = tmp_path_factory.mktemp("curated")
    return build_lfw_export(root, lfw_dir, model_root, per_person=6, lookalikes=False)


@pytest.fixture(scope="module")
def services(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    roots = [tmp_path_factory.getbasetemp(), shared_dir]
    with running_services(tmp_path_factory.mktemp("services"), roots) as started:
        yield started


class Review(ReviewApp):
    """The review app, driven as its page does (its CSRF token and origin on each action)."""

    def __init__(self, export: Path, service: ServiceProcess) -> None:
        super().__init__(export, f"--export={service.address}")
        self.http = httpx.Client(base_url=self.base, timeout=120)
        page = self.http.get("/").text
        self.csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]

    def act(self, action: str, **body: object) -> dict:
        answer = self.http.post(
            f"/api/{action}",
            json=body,
            headers={"x-csrf-token": self.csrf, "origin": self.base},
        )
        assert answer.status_code == 200, answer.text
        done = answer.json()
        assert done["ok"], done
        return done

    def stop(self) -> None:
        self.http.close()
        super().stop()


@pytest.fixture
def review() -> Iterator[list[Review]]:
    opened: list[Review] = []
    yield opened
    for app in opened:
        app.stop()


def _pngs(export: Path) -> dict[str, bytes]:
    """Every crop PNG of the export's facesets (faces/ and faces/_dropped/), by path."""
    return {
        p.relative_to(export).as_posix(): p.read_bytes()
        for p in sorted(export.rglob("*.png"))
        if layout.CROPS_DIR in p.relative_to(export).parts
    }


def _exported(export: Path) -> dict[str, bytes]:
    """The facesets' crops, bundles and markers: what a fresh export of the plan makes."""
    return {
        p.relative_to(export).as_posix(): p.read_bytes()
        for p in sorted(export.rglob("*"))
        if p.is_file()
        and p.suffix in {".png", ".fsz"}
        and p.relative_to(export).parts[0] not in {"report", layout.REVIEW_DIR}
    }


def _assert_manifests_match_folders(export: Path) -> dict[str, dict]:
    """Each faceset's manifest lists exactly the PNGs of its faces/, its _all .fsz holds them."""
    top = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    inners = {}
    for name, entry in top["facesets"].items():
        inner = json.loads((export / entry["manifest"]).read_text())
        folder = export / entry["dir"] / layout.CROPS_DIR
        held = {p.relative_to(export).as_posix(): p.read_bytes() for p in folder.glob("*.png")}
        assert {c["file"] for c in inner["crops"]} == set(held), name
        assert [c["rank"] for c in inner["crops"]] == list(range(1, len(held) + 1)), name
        with zipfile.ZipFile(export / inner["fsz_all"]) as bundle:
            members = sorted(bundle.read(n) for n in bundle.namelist())
        assert members == sorted(held.values()), name
        inners[name] = inner
    return inners


def test_a_reexport_keeps_rejects_splits_merges_and_names(
    built: dict, services: dict, review: list[Review], tmp_path: Path
) -> None:
    export = tmp_path / "export"
    shutil.copytree(built["export"], export)
    store, plan = built["store"], built["root"] / "refined" / layout.REFINE_MANIFEST

    def export_swap(into: Path) -> dict:
        done = run_facesets(
            "export-swap", str(store), str(plan), str(into), "--min-face-short", "0",
            "--json", f"--export={services['export'].address}",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    fresh = tmp_path / "fresh"
    export_swap(fresh)
    assert _exported(fresh) == _exported(export)  # the copy is what the plan exports

    app = Review(export, services["export"])
    review.append(app)
    crops = {
        name: sorted(p.name for p in (export / name / layout.CROPS_DIR).glob("*.png"))
        for name in ("faceset_000", "faceset_001", "faceset_002")
    }
    assert all(len(c) >= 4 for c in crops.values()), crops
    app.act("reject", faceset="faceset_000", crops=crops["faceset_000"][:1])
    split = app.act("split", faceset="faceset_001", crops=crops["faceset_001"][:2])
    made = split["summary"]["into"]  # a new faceset: the next free number
    app.act("name", faceset="faceset_002", name="Ada Lovelace")
    app.stop()
    merged = run_facesets(
        "merge", str(export), "faceset_001", "--into", "faceset_000",
        f"--export={services['export'].address}",
    )  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    decided = _pngs(export)
    bundles = sorted(p.name for p in (export / "faceset_002").glob("*.fsz"))
    assert bundles == ["Ada_Lovelace_all.fsz", "Ada_Lovelace_top30.fsz"]
    before = _assert_manifests_match_folders(export)

    summary = export_swap(export)
    assert _pngs(export) == decided  # nothing came back, nothing left
    after = _assert_manifests_match_folders(export)
    assert summary["kept_aside"] == {"faceset_001": "merged"}
    # faceset_001's crops the merge moved in; the split's faceset is not the plan's to export.
    brought = len(crops["faceset_001"]) - 2
    assert summary["curated_kept"] == {"crops": brought, "dropped": 1}
    assert set(after) == {"faceset_000", "faceset_002", made}
    for name in after:  # the same crops, ranks and records (the distance to a centroid now
        # made without the rejected face aside)
        assert [c | {"distance": 0} for c in after[name]["crops"]] == [
            c | {"distance": 0} for c in before[name]["crops"]
        ], name
    rejected = [d for d in after["faceset_000"]["dropped"] if d["reason"] == "rejected"]
    assert [Path(d["kept_file"]).name for d in rejected] == crops["faceset_000"][:1]
    assert sorted(p.name for p in (export / "faceset_002").glob("*.fsz")) == bundles
    assert not (export / "faceset_001").exists()
    again = export_swap(export)  # a re-run changes nothing
    assert again["curated_kept"] == summary["curated_kept"] and _pngs(export) == decided

    # `route` numbers a new identity past the plan's facesets: the number the split took.
    routed = json.loads(plan.read_text())
    split_faces = [c["face_id"] for c in after[made]["crops"]]
    routed["facesets"].append({"name": made, "number": int(made[-3:]), "face_ids": split_faces})
    (tmp_path / "routed").mkdir()
    (tmp_path / "routed" / layout.REFINE_MANIFEST).write_text(json.dumps(routed))
    clash = run_facesets(
        "export-swap", str(store), str(tmp_path / "routed" / layout.REFINE_MANIFEST),
        str(export), "--min-face-short", "0", f"--export={services['export'].address}",
    )  # fmt: skip
    assert clash.returncode == 1, clash.stderr
    assert f"{made} in {export} was made in review (split from faceset_001)" in clash.stderr
    assert f"facesets restore {export} --faceset {made}" in clash.stderr
    assert _pngs(export) == decided

    # Every decision can still be put back, newest first; the export is then the plan's.
    top = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    for run in reversed(top[layout.MAINTENANCE_RUNS]):
        restored = run_facesets(
            "restore", str(export), "--run", run["id"], f"--export={services['export'].address}"
        )
        assert restored.returncode == 0, (run["kind"], restored.stderr)
    back = export_swap(export)
    assert back["kept_aside"] == {} and back["curated_kept"] == {"crops": 0, "dropped": 0}
    assert _exported(export) == _exported(fresh)


@pytest.mark.parametrize("decision", ["merge", "name"])
def test_a_run_restored_after_an_export_keeps_the_crops_exported_since(
    built: dict, services: dict, review: list[Review], tmp_path: Path, decision: str
) -> None:
    """A merge (or a name given in review) puts the faceset's manifest back as it was when it
    is restored. After an export that added crops to it (faces `route` found since), that
    manifest left them out: PNGs in faces/ and in the .fsz, no record, no page in the report.
    They are kept."""
    store, plan = built["store"], built["root"] / "refined" / layout.REFINE_MANIFEST
    address = f"--export={services['export'].address}"
    full = json.loads(plan.read_text())
    earlier = json.loads(plan.read_text())
    earlier["facesets"][0]["face_ids"] = full["facesets"][0]["face_ids"][:-2]
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / layout.REFINE_MANIFEST).write_text(json.dumps(earlier))

    def export_swap(into: Path, plan: Path) -> None:
        done = run_facesets(
            "export-swap", str(store), str(plan), str(into), "--min-face-short", "0", address
        )
        assert done.returncode == 0, done.stderr[-3000:]

    export, fresh = tmp_path / "export", tmp_path / "fresh"
    export_swap(export, tmp_path / "earlier" / layout.REFINE_MANIFEST)
    if decision == "merge":
        done = run_facesets("merge", str(export), "faceset_001", "--into", "faceset_000", address)
        assert done.returncode == 0, done.stderr
    else:
        app = Review(export, services["export"])
        review.append(app)
        app.act("name", faceset="faceset_000", name="Ada Lovelace")
        app.stop()
    export_swap(export, plan)  # faceset_000 gains the two faces the earlier plan lacked
    top = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    run = top[layout.MAINTENANCE_RUNS][-1]["id"]
    restored = run_facesets("restore", str(export), "--run", run, address)
    assert restored.returncode == 0, restored.stderr
    _assert_manifests_match_folders(export)
    export_swap(export, plan)
    export_swap(fresh, plan)
    assert _exported(export) == _exported(fresh)


def test_a_plan_that_numbers_other_people_so_is_refused_over_decisions(
    built: dict, services: dict, review: list[Review], tmp_path: Path
) -> None:
    """A plan whose faceset_000 is the person the export knows as faceset_001 (a plan of
    another refine output, say). Exported over an export with decisions, the name given one
    person went to the other, and its crops a merge brought in with it."""
    export = tmp_path / "export"
    shutil.copytree(built["export"], export)
    app = Review(export, services["export"])
    review.append(app)
    crops = sorted(p.name for p in (export / "faceset_000" / layout.CROPS_DIR).glob("*.png"))
    app.act("reject", faceset="faceset_000", crops=crops[:1])
    app.act("name", faceset="faceset_001", name="Ada Lovelace")
    app.stop()
    decided = {p: p.read_bytes() for p in sorted(export.rglob("*")) if p.is_file()}
    plan = json.loads((built["root"] / "refined" / layout.REFINE_MANIFEST).read_text())
    first, second = plan["facesets"][0]["face_ids"], plan["facesets"][1]["face_ids"]
    plan["facesets"][0]["face_ids"], plan["facesets"][1]["face_ids"] = second, first
    (tmp_path / "renumbered").mkdir()
    renumbered = tmp_path / "renumbered" / layout.REFINE_MANIFEST
    renumbered.write_text(json.dumps(plan))
    refused = run_facesets(
        "export-swap", str(built["store"]), str(renumbered), str(export), "--min-face-short",
        "0", f"--export={services['export'].address}",
    )  # fmt: skip
    after = {p: p.read_bytes() for p in sorted(export.rglob("*")) if p.is_file()}
    assert after == decided
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "faceset_000 in " + str(export) + " holds decisions made in review" in refused.stderr
    assert "holds 0 of the 5 faces it was exported with" in refused.stderr


def test_a_name_edited_into_the_runs_names_no_file(
    built: dict, services: dict, tmp_path: Path
) -> None:
    """The runs an export records are a file anyone who can write the export may edit; a
    `name` run naming a faceset `../../x` is no name review would give, and names no file."""
    export = tmp_path / "share" / "export"
    shutil.copytree(built["export"], export)
    top = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    saved = {"src": "faceset_000/manifest.json", "dst": "_review/.runs/x/m.json"}
    saved |= {"kind": "saved_manifest", "reason": "named", "restored": False}
    hostile = {"faceset": "faceset_000", "name": "../../planted"}
    top[layout.MAINTENANCE_RUNS] = [
        {"id": "x", "kind": "name", "parameters": hostile, "moves": [saved]}
    ]
    (export / layout.EXPORT_MANIFEST).write_text(json.dumps(top))
    plan = built["root"] / "refined" / layout.REFINE_MANIFEST
    done = run_facesets(
        "export-swap", str(built["store"]), str(plan), str(export), "--min-face-short", "0",
        f"--export={services['export'].address}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    bundles = sorted(p.name for p in (export / "faceset_000").glob("*.fsz"))
    assert bundles == ["faceset_000_all.fsz", "faceset_000_top30.fsz"]
    assert not [p for p in (tmp_path / "share").rglob("*planted*")]


def test_review_beside_another_store_keeps_marks_in_the_export(
    built: dict, services: dict, review: list[Review], tmp_path: Path
) -> None:
    """`facesets review EXPORT` takes faces.db beside EXPORT as the store the export came
    from, and wrote the facesets marked as different people into its cannot-link list. A
    faces.db there of another library (same photos, embedded anew: other ids) would have had
    its refine keep apart faces the mark never named; it is left alone, and the user told."""
    export = tmp_path / "run" / "export"
    shutil.copytree(built["export"], export)
    beside = tmp_path / "run" / "faces.db"
    copy_store(built["store"], beside)
    with sqlite3.connect(beside) as copy:
        copy.execute("UPDATE meta SET value = 'another-store' WHERE key = 'store_id'")
    copy.close()
    app = Review(export, services["export"])
    review.append(app)
    marked = app.act("different", faceset="faceset_000", other="faceset_001")
    assert marked["summary"]["counts"] == {"pairs": 1}
    app.stop()
    assert not Path(str(beside) + layout.CANNOT_LINK_SUFFIX).exists()
    assert app.process.stderr is not None
    said = app.process.stderr.read()
    assert f"{export} was exported from {built['store']}, not {beside}" in said
    different = json.loads((export / layout.DIFFERENT_PEOPLE).read_text())
    assert [p["facesets"] for p in different["pairs"]] == [["faceset_000", "faceset_001"]]


CRASH = killed_at(
    "facesets.export.maintenance.journal.rename",
    "int(sys.argv[2])",
    """
    from facesets.contract.export import MergeParams
    from facesets.export.maintenance import merge
    merge.merge(Path(sys.argv[1]), MergeParams(sys.argv[3], sys.argv[4]))
    """,
)


def test_an_export_after_a_run_cut_short_rolls_it_back_first(
    built: dict, services: dict, tmp_path: Path
) -> None:
    """A merge that died half-way leaves its journal; the next maintenance or report job rolls
    it back. export-swap did not: it exported over the half-merged folders, then the report
    `facesets run` makes next rolled the merge back over its work (manifests as before the
    merge, PNGs the export had made again blocking the moves back), leaving crops of one
    person in another's faceset and .fsz. It rolls the run back before it reads anything."""
    export = tmp_path / "export"
    shutil.copytree(built["export"], export)
    store, plan = built["store"], built["root"] / "refined" / layout.REFINE_MANIFEST
    before = _exported(export)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(export), "2", "faceset_001", "faceset_000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 9, crashed.stderr[-2000:]
    assert (export / layout.MAINTENANCE_JOURNAL).is_file()
    address = f"--export={services['export'].address}"
    again = run_facesets(
        "export-swap", str(store), str(plan), str(export), "--min-face-short", "0", address
    )
    assert again.returncode == 0, again.stderr[-3000:]
    report = run_facesets("report", str(export), address)
    assert report.returncode == 0, report.stderr[-3000:]
    assert not (export / layout.MAINTENANCE_JOURNAL).exists()
    _assert_manifests_match_folders(export)
    assert _exported(export) == before
