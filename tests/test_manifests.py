"""The typed manifest models of the contract: what they write, what they read (manifests of
earlier versions included), and the clear error a damaged one gives, down to a command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facesets.contract import layout
from facesets.contract.clustering import RefineParams
from facesets.contract.manifests import (
    SCHEMA_KEY,
    SCHEMA_VERSION,
    ClusterManifest,
    ConsolidateState,
    EraPlan,
    ExportManifest,
    FacesetEntry,
    FacesetManifest,
    LookalikePair,
    ManifestError,
    ModelIdentity,
    RefineManifest,
    VideoPlan,
)
from tests.services import run_facesets


def refine_manifest() -> RefineManifest:
    return RefineManifest(
        command="refine",
        parameters=RefineParams().recorded(),
        store="/data/store.sqlite",
        model=ModelIdentity("facepack-mini", 512),
        facesets=[
            FacesetEntry("faceset_001", 1, [3, 7], photos=["ab" * 32], centroid=[0.6, 0.8]),
            FacesetEntry("faceset_002", 2, [4], extra={"label": "Ada"}),
        ],
        written=["faceset_001/a.jpg"],
        extra={
            "rejected": {"quality": [9], "outliers": []},
            "lookalikes": [LookalikePair(["faceset_001", "faceset_002"], 0.2, []).to_json()],
        },
    )


def test_a_manifest_round_trips_with_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / layout.REFINE_MANIFEST
    written = refine_manifest()
    written.write(path)
    on_disk = json.loads(path.read_text())
    assert on_disk[SCHEMA_KEY] == SCHEMA_VERSION
    # The parameter block is the params object serialised, and the JSON keeps its old keys.
    assert on_disk["parameters"] == RefineParams().recorded()
    assert on_disk["facesets"][1] == {"name": "faceset_002", "number": 2, "face_ids": [4]} | {
        "label": "Ada"
    }
    assert "pending" not in on_disk
    read = RefineManifest.read(path)
    assert read == written
    assert read is not None and read.rejected() == {"quality": [9], "outliers": []}
    assert read.lookalikes() == [LookalikePair(["faceset_001", "faceset_002"], 0.2, [])]
    assert RefineManifest.read(tmp_path / "absent.json") is None
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file and a rename


def test_a_manifest_without_a_version_reads_as_version_1_and_keeps_unknown_keys(
    tmp_path: Path,
) -> None:
    path = tmp_path / layout.CLUSTER_MANIFEST
    old = {  # as `cluster` wrote it before manifests had a schema version
        "command": "cluster",
        "parameters": {"threshold": 0.4, "link_mode": "auto", "cannot_link": True},
        "persons": [{"name": "person_001", "number": 1, "face_ids": [1, 2], "photos": ["x"]}],
        "singletons": {"face_ids": [5], "photos": ["y"]},
        "components": {"methods": {"dense": 1}},
        "a_newer_section": [1, 2, 3],
        "written": ["person_001/x.jpg"],
    }
    path.write_text(json.dumps(old))
    manifest = ClusterManifest.read(path)
    assert manifest is not None
    assert [(p.number, p.face_ids) for p in manifest.persons] == [(1, [1, 2])]
    assert manifest.singletons.face_ids == [5]
    assert manifest.param("link_mode") == "auto"
    manifest.write(path)
    again = json.loads(path.read_text())
    assert again == old | {SCHEMA_KEY: SCHEMA_VERSION}  # nothing lost, nothing renamed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not a readable manifest"),
        ("[1, 2]", "not a JSON object"),
        ('{"command": "refine", "facesets": [{"name": "f", "face_ids": "1,2"}]}', "'face_ids'"),
        ('{"command": "refine", "facesets": {"f": 1}}', "'facesets' should be a list"),
        ('{"command": "refine", "parameters": {"a": {"b": 1}}}', "parameters.a"),
        (json.dumps({SCHEMA_KEY: SCHEMA_VERSION + 1}), "schema version"),
    ],
)
def test_a_damaged_manifest_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / layout.REFINE_MANIFEST
    path.write_text(text)
    with pytest.raises(ManifestError, match=message) as caught:
        RefineManifest.read(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)  # the error policy answers FAILED_PRECONDITION


def test_every_model_round_trips(tmp_path: Path) -> None:
    era_plan = {
        "command": "age_split",
        "faceset": "faceset_001",
        "centroid": [1.0, 0.0],
        "parameters": {"era_years": 6},
        "facesets": [
            {
                "name": "faceset_001_era_01",
                "number": 1,
                "dir": "faceset_001_era_01",
                "partition": "eras",
                "group": "faceset_001",
                "face_ids": [1, 2],
                "years": {"first": 2001, "last": 2003, "dominant": 2002},
                "label": "2001-2003",
                "markers": {"faceset_001_era_01.txt": "an era\n"},
                "anchor": True,
                "anchor_centroid": [1.0, 0.0],
                "anchor_year": 2002,
                "joined": [{"faces": 1, "decision": "joined", "year": None}],
            }
        ],
        "fragments": [],
        "no_capture_time": [],
    }
    export = {
        "version": 1,
        "facesets": {"faceset_001": {"number": 1, "dir": "faceset_001", "counts": {"kept": 2}}},
        "gates": {"refine": {"blur": 1}},
        "maintenance_runs": [{"id": "r1", "moves": []}],
    }
    faceset = {"faceset": "faceset_001", "params": {"top_n": 4}, "crops": [{"face_id": 3}]}
    video = {
        "version": 1,
        "src": "/v",
        "videos": [{"name": "a", "source": "/v/a.mp4", "shots": [], "error": ""}],
        "segments": [],
    }
    rounds = {"rounds": [{"status": "done", "refine_before": "{}", "merges": [], "candidates": []}]}
    for model, raw in [
        (EraPlan, era_plan),
        (ExportManifest, export),
        (FacesetManifest, faceset),
        (VideoPlan, video),
        (ConsolidateState, rounds),
    ]:
        path = tmp_path / "m.json"
        path.write_text(json.dumps(raw))
        read = model.read(path)  # type: ignore[attr-defined]
        assert read is not None, model
        read.write(path)
        assert json.loads(path.read_text())[SCHEMA_KEY] == SCHEMA_VERSION
        assert model.read(path) == read, model  # type: ignore[attr-defined]
    plan = EraPlan.from_json(era_plan, "plan")
    assert plan.facesets[0].joined == [{"faces": 1, "decision": "joined", "year": None}]
    top = ExportManifest.from_json(export, "export")
    assert top.partitions["facesets"]["faceset_001"]["dir"] == "faceset_001"
    assert top.runs("maintenance_runs") == [{"id": "r1", "moves": []}]
    assert FacesetManifest.from_json(faceset, "f").face_ids() == [3]


def test_report_on_an_export_whose_manifest_is_damaged_says_so(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / layout.EXPORT_MANIFEST).write_text('{"facesets": {"faceset_001": ')
    result = run_facesets("report", str(export), timeout=300)
    assert result.returncode != 0
    assert "manifest.json is not a readable export manifest" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (export / layout.REPORT_DIR).exists()  # nothing written


def test_restore_on_an_export_whose_manifest_is_damaged_says_so(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / layout.EXPORT_MANIFEST).write_text(
        json.dumps({"version": 1, "facesets": {"faceset_001": 7}})
    )
    result = run_facesets("restore", str(export), "--faceset", "faceset_001", timeout=300)
    assert result.returncode != 0
    assert "facesets.faceset_001 is not a JSON object" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
