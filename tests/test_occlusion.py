"""The occlusion filter with scores from a deterministic scorer: thresholds, quarantine of a
mostly occluded faceset, dry runs, idempotent re-runs, --undo and restore, byte for byte."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from maintenance_export import assert_fsz_match_folders, build_export, pngs, snapshot

from facesets.contract import layout
from facesets.contract.export import OcclusionParams
from facesets.contract.fields import InvalidParameter
from facesets.export.errors import ExportError
from facesets.export.maintenance import runs
from facesets.export.maintenance.occlusion import occlusion_filter
from facesets.export.maintenance.restore import last_run, restore

# occlusion probability by PNG file name; every other PNG scores 0.1
OCCLUSION = {"a03.png": 0.7, "a05.png": 0.95, "a07.png": 0.69, "b00.png": 0.9, "b03.png": 0.8}


class Scorer:
    """Per-image probabilities over [mask, sunglasses, clear] from OCCLUSION."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, paths: Sequence[Path], prompts: Sequence[str]) -> np.ndarray:
        assert len(prompts) == 3
        self.calls.append([p.name for p in paths])
        occluded = np.array([OCCLUSION.get(p.name, 0.1) for p in paths])
        return np.stack([occluded * 0.25, occluded * 0.75, 1 - occluded], axis=1)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    # faceset_000: 10 PNGs, 2 at or over 0.7 (20%); faceset_001: 5 PNGs, 2 occluded (40%);
    # faceset_002: nothing occluded
    return build_export(
        tmp_path / "export", {0: pngs(10, 1, "a"), 1: pngs(5, 2, "b"), 2: pngs(4, 3, "c")}
    )


def test_thresholds_quarantine_and_fsz_rebuilt(export: Path) -> None:
    before = snapshot(export)
    outcome = occlusion_filter(export, OcclusionParams(), Scorer())
    assert outcome.run.counts == {"facesets": 3, "pngs": 19, "dropped": 2, "masked": 1}
    dropped = export / "faceset_000" / layout.CROPS_DIR / layout.DROPPED_DIR
    assert sorted(p.name for p in dropped.iterdir()) == ["a03.png", "a05.png"]  # 0.69 stays
    assert (export / "faceset_000" / layout.CROPS_DIR / "a07.png").exists()
    assert not (export / "faceset_001").exists()
    masked = export / layout.MASKED_DIR / "faceset_001"
    assert sorted(p.name for p in (masked / layout.CROPS_DIR).iterdir()) == [
        f"b{i:02d}.png" for i in range(5)
    ]
    after = snapshot(export)
    moved = {m.src for m in outcome.run.moves}
    for rel, data in before.items():  # nothing else moved or changed but the rebuilt .fsz
        if rel.endswith(".png") and not any(rel.startswith(m) for m in moved):
            assert after[rel] == data, rel
    assert after["faceset_002/faceset_002_all.fsz"] == before["faceset_002/faceset_002_all.fsz"]
    assert assert_fsz_match_folders(export) == 6
    manifest = runs.read_manifest(export)
    assert sorted(manifest["facesets"]) == ["faceset_000", "faceset_002"]
    assert manifest["masked"]["faceset_001"]["dir"] == "_masked/faceset_001"
    assert manifest["masked"]["faceset_001"]["fsz_all"].startswith("_masked/faceset_001/")
    assert manifest["facesets"]["faceset_000"]["counts"]["kept"] == 8
    provenance = manifest["occlusion_filter_run"]
    assert provenance["id"] == outcome.run.id and provenance["counts"]["dropped"] == 2
    assert provenance["parameters"]["threshold"] == 0.7 and provenance["time"]
    inner = layout.read_json(export / "faceset_000" / layout.FACESET_MANIFEST)
    assert sorted(Path(d["file"]).name for d in inner["dropped"]) == ["a03.png", "a05.png"]
    assert {d["reason"] for d in inner["dropped"]} == {"occluded"}

    again = occlusion_filter(export, OcclusionParams(), Scorer())  # idempotent
    assert again.run.moves == [] and snapshot(export) == after


def test_dry_run_reports_and_moves_nothing(export: Path) -> None:
    before = snapshot(export)
    manifest = runs.read_manifest(export)
    outcome = occlusion_filter(export, OcclusionParams(dry_run=True), Scorer())
    assert outcome.run.counts["dropped"] == 2 and outcome.run.counts["masked"] == 1
    assert snapshot(export) == before and runs.read_manifest(export) == manifest


def test_undo_and_restore_bring_every_file_back_byte_identical(export: Path) -> None:
    before = snapshot(export)
    first = occlusion_filter(export, OcclusionParams(), Scorer())
    assert last_run(export, "occlusion") == first.run.id
    undone = restore(export, run_id=first.run.id)
    assert undone.conflicts == [] and len(undone.restored) == 3
    assert snapshot(export) == before
    assert sorted(runs.read_manifest(export)["facesets"]) == [f"faceset_00{i}" for i in range(3)]
    assert not runs.read_manifest(export)["masked"]
    assert last_run(export, "occlusion") is None
    assert assert_fsz_match_folders(export) == 6

    occlusion_filter(export, OcclusionParams(), Scorer())
    by_name = restore(export, faceset="faceset_001")  # only that faceset comes back
    assert [m["src"] for m in by_name.restored] == ["faceset_001"]
    assert (export / "faceset_001" / layout.CROPS_DIR / "b00.png").exists()
    assert (export / "faceset_000" / layout.CROPS_DIR / layout.DROPPED_DIR / "a03.png").exists()
    restore(export, faceset="faceset_000")
    assert snapshot(export) == before


def test_bad_parameters_and_unknown_runs_are_refused(export: Path) -> None:
    with pytest.raises(InvalidParameter, match="threshold"):
        OcclusionParams(threshold=1.5)
    with pytest.raises(ExportError, match="no maintenance run"):
        restore(export, run_id="nope")
    with pytest.raises(ExportError, match="exactly one"):
        restore(export)


def test_restore_command_through_the_export_service(export: Path) -> None:
    import json

    from services import run_facesets

    before = snapshot(export)
    first = occlusion_filter(export, OcclusionParams(), Scorer())
    refused = run_facesets("restore", str(export), "--run", "no-such-run")
    assert refused.returncode != 0 and "no maintenance run" in refused.stderr
    # A faceset name with a typo says so (it restored nothing and exited 0).
    typo = run_facesets("restore", str(export), "--faceset", "faceset_0001")
    assert typo.returncode == 1 and "no faceset 'faceset_0001' in" in typo.stderr, typo.stderr
    done = run_facesets("restore", str(export), "--run", first.run.id, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(json.loads(done.stdout)["restored"]) == 3
    assert snapshot(export) == before


def test_report_shows_dropped_pngs_by_reason_and_the_masked_partition(export: Path) -> None:
    from facesets.export import report

    occlusion_filter(export, OcclusionParams(), Scorer())
    result = report.build_report(export)
    assert result.summary["images_missing"] == 0  # the dropped PNGs are the thumbnails' source
    pages = export / layout.REPORT_DIR
    dropped_page = (pages / "dropped.html").read_text()
    assert dropped_page.count("occluded") >= 2 and "a03.png" in dropped_page
    index = (pages / layout.REPORT_INDEX).read_text()
    assert "Masked" in index and "faceset_001" in index
