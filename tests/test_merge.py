"""`facesets merge`: one faceset joins another, reversibly; refusals; the report names the
target; an export made before faces/ (PNGs in crops/) is still maintained."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from maintenance_export import TOP_N, assert_fsz_match_folders, build_export, pngs, snapshot

from facesets.contract import layout
from facesets.contract.export import MergeParams
from facesets.contract.fields import InvalidParameter
from facesets.export.errors import ExportError
from facesets.export.maintenance import runs
from facesets.export.maintenance.merge import merge
from facesets.export.maintenance.restore import restore


@pytest.fixture
def export(tmp_path: Path) -> Path:
    # b01.png of faceset_001 clashes with a name in faceset_000
    sets = {0: pngs(4, 1, "a") + [("b01.png", pngs(1, 9, "x")[0][1])], 1: pngs(3, 2, "b")}
    return build_export(tmp_path / "export", {**sets, 2: pngs(2, 3, "c")})


def inner(export: Path, rel: str) -> dict:
    return layout.read_json(export / rel / layout.FACESET_MANIFEST)


def test_merge_moves_pngs_quarantines_and_restores_byte_identical(export: Path) -> None:
    before = snapshot(export)
    target_manifest = (export / "faceset_000" / layout.FACESET_MANIFEST).read_bytes()
    source_manifest = (export / "faceset_001" / layout.FACESET_MANIFEST).read_bytes()
    outcome = merge(export, MergeParams("faceset_001", "faceset_000"))
    assert outcome.run.counts == {"pngs": 3, "renamed": 1}

    faces = export / "faceset_000" / layout.CROPS_DIR
    names = sorted(p.name for p in faces.glob("*.png"))
    assert names == sorted(
        ["a00.png", "a01.png", "a02.png", "a03.png", "b01.png"]
        + ["b00.png", "b01__faceset_001.png", "b02.png"]
    )
    assert (faces / "b01__faceset_001.png").read_bytes() == before["faceset_001/faces/b01.png"]
    assert not (export / "faceset_001").exists()
    gone = export / layout.MERGED_DIR / "faceset_001"
    assert gone.is_dir() and not list(gone.glob("*.fsz"))
    target = inner(export, "faceset_000")
    assert [c["rank"] for c in target["crops"]] == list(range(1, 9))
    assert target["counts"]["kept"] == 8 and target["merged_from"] == ["faceset_001"]
    assert {c["file"] for c in target["crops"]} == {f"faceset_000/faces/{n}" for n in names}
    assert assert_fsz_match_folders(export) == 4  # faceset_000 and faceset_002

    manifest = runs.read_manifest(export)
    assert sorted(manifest["facesets"]) == ["faceset_000", "faceset_002"]
    entry = manifest["merged"]["faceset_001"]
    assert entry["into"] == "faceset_000" and entry["dir"] == "_merged/faceset_001"
    assert manifest["facesets"]["faceset_000"]["counts"]["kept"] == 8
    assert len(manifest["facesets"]["faceset_000"]["top"]) == TOP_N
    block = manifest["merge_run"]
    assert block["id"] == outcome.run.id and block["time"]
    assert block["parameters"] == {"faceset": "faceset_001", "into": "faceset_000"}
    assert block["counts"] == {"pngs": 3, "renamed": 1} and len(block["moves"]) == 6

    after = snapshot(export)
    again = merge(export, MergeParams("faceset_001", "faceset_000"))  # idempotent
    assert again.run.moves == [] and again.note and snapshot(export) == after
    assert runs.read_manifest(export) == manifest

    back = restore(export, run_id=outcome.run.id)
    assert back.conflicts == [] and back.runs == [outcome.run.id]
    assert snapshot(export) == before
    assert (export / "faceset_000" / layout.FACESET_MANIFEST).read_bytes() == target_manifest
    assert (export / "faceset_001" / layout.FACESET_MANIFEST).read_bytes() == source_manifest
    restored = runs.read_manifest(export)
    assert sorted(restored["facesets"]) == [f"faceset_00{i}" for i in range(3)]
    assert not restored["merged"] and not (export / layout.MERGED_DIR / ".runs").exists()
    assert assert_fsz_match_folders(export) == 6


def test_dry_run_and_restore_by_faceset_name(export: Path) -> None:
    before = snapshot(export)
    manifest = runs.read_manifest(export)
    dry = merge(export, MergeParams("faceset_002", "faceset_001", dry_run=True))
    assert dry.run.counts["pngs"] == 2 and snapshot(export) == before
    assert runs.read_manifest(export) == manifest
    merge(export, MergeParams("faceset_002", "faceset_001"))
    assert restore(export, faceset="faceset_001").conflicts == []  # the target names it too
    assert snapshot(export) == before


def test_refusals(export: Path) -> None:
    with pytest.raises(InvalidParameter, match="other than"):
        MergeParams("faceset_001", "faceset_001")
    with pytest.raises(InvalidParameter, match="never a path"):
        MergeParams("../faceset_001", "faceset_000")
    with pytest.raises(ExportError, match="no faceset 'faceset_009'"):
        merge(export, MergeParams("faceset_009", "faceset_000"))
    with pytest.raises(ExportError, match="no faceset 'faceset_009'"):
        merge(export, MergeParams("faceset_000", "faceset_009"))
    merge(export, MergeParams("faceset_001", "faceset_000"))
    with pytest.raises(ExportError, match="'merged' partition"):
        merge(export, MergeParams("faceset_001", "faceset_002"))  # merged elsewhere already
    with pytest.raises(ExportError, match="'merged' partition"):
        merge(export, MergeParams("faceset_002", "faceset_001"))


def test_report_lists_the_merged_faceset_with_its_target(export: Path) -> None:
    from facesets.export import report

    merge(export, MergeParams("faceset_001", "faceset_000"))
    result = report.build_report(export)
    assert result.summary["images_missing"] == 0
    index = (export / layout.REPORT_DIR / layout.REPORT_INDEX).read_text()
    assert "Merged" in index and 'data-partition="merged"' in index
    assert "merged into faceset_000" in index


def test_an_export_with_crops_folders_is_still_maintained(export: Path) -> None:
    """An export made before faces/: PNGs and manifests under crops/."""
    for set_dir in sorted(export.glob("faceset_*")):
        shutil.move(set_dir / layout.CROPS_DIR, set_dir / layout.LEGACY_CROPS_DIR)
        manifest = inner(export, set_dir.name)
        for crop in manifest["crops"]:
            crop["file"] = crop["file"].replace("/faces/", "/crops/")
        layout.atomic_write_json(set_dir / layout.FACESET_MANIFEST, manifest)
    before = snapshot(export)
    assert runs.crop_pngs(export, "faceset_002")[0].split("/")[1] == layout.LEGACY_CROPS_DIR
    outcome = merge(export, MergeParams("faceset_002", "faceset_001"))
    legacy = export / "faceset_001" / layout.LEGACY_CROPS_DIR
    assert len(list(legacy.glob("*.png"))) == 5
    assert assert_fsz_match_folders(export) == 4
    restore(export, run_id=outcome.run.id)
    assert snapshot(export) == before


@pytest.fixture(scope="module")
def export_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """One export service for the commands (a command's own start-up is tested elsewhere)."""
    from services import started_service

    with started_service("export", tmp_path_factory.mktemp("export-service")) as service:
        yield ["--export", service.address]


def test_merge_command_end_to_end(export: Path, export_service: list[str]) -> None:
    """`facesets merge` and `facesets restore` through an export service: the merge, a
    re-run that changes no file, refusals, and a restore that brings every byte back."""
    import hashlib
    import json

    from services import run_facesets as run_command

    def run_facesets(*args: str) -> subprocess.CompletedProcess[str]:
        return run_command(*args, *export_service)

    def hashes() -> dict[str, str]:
        return {
            p.relative_to(export).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(export.rglob("*"))
            if p.is_file() and p.name != layout.WRITER_LOCK
        }

    before = snapshot(export)
    manifests = {n: inner(export, n) for n in ("faceset_000", "faceset_001")}
    command = ("merge", str(export), "faceset_001", "--into", "faceset_000", "--json")
    done = run_facesets(*command)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["counts"] == {"pngs": 3, "renamed": 1}
    assert len(list((export / "faceset_000" / layout.CROPS_DIR).glob("*.png"))) == 8
    assert (export / layout.MERGED_DIR / "faceset_001").is_dir()
    assert runs.read_manifest(export)["merged"]["faceset_001"]["into"] == "faceset_000"
    assert assert_fsz_match_folders(export) == 4
    merged = hashes()

    again = run_facesets(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["moves"] == [] and hashes() == merged

    for args, message in (
        (("faceset_002", "--into", "faceset_002"), "other than faceset_002"),
        (("faceset_007", "--into", "faceset_000"), "no faceset 'faceset_007'"),
    ):
        refused = run_facesets("merge", str(export), *args)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr[-2000:]
    assert hashes() == merged

    back = run_facesets("restore", str(export), "--run", summary["run"], "--json")
    assert back.returncode == 0, back.stderr[-3000:]
    assert snapshot(export) == before
    assert {n: inner(export, n) for n in manifests} == manifests
    assert assert_fsz_match_folders(export) == 6
