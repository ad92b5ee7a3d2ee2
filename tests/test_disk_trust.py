"""What the export service finds on disk is not trusted (issue 26, findings 1, 2, 3 and 9):
moves read from a manifest, a faceset's `dir`, symbolic links inside an export. A real export
service started with --allow-root, called as a client that can write into the export folder
(a shared or synced drive, a second user) would call it; nothing outside the root may change.
Restore is all or nothing, and a restore a crash cut short is rolled back by the next job.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import REPO
from maintenance_export import assert_fsz_match_folders, build_export, pngs, snapshot

from facesets.contract import layout
from facesets.v1 import export_pb2, export_pb2_grpc
from services import NO_PEERS, ServiceProcess, killed_at, started_service


def tree(folder: Path) -> dict[str, str]:
    """Every file and link below `folder` (a link by its target), by relative path."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file() and path.name != layout.WRITER_LOCK:
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Path]]:
    """An export service allowed one folder; the peers it would call do not exist (every call
    here is refused before it would reach them)."""
    base = tmp_path_factory.mktemp("disk_trust")
    allowed = base / "allowed"
    allowed.mkdir()
    with started_service("export", base, *NO_PEERS, roots=[allowed]) as process:
        yield process, allowed


@pytest.fixture
def setup(service: tuple[ServiceProcess, Path], request: pytest.FixtureRequest) -> dict:
    """A fresh export inside the root and a folder of secrets beside it (outside the root)."""
    process, allowed = service
    name = hashlib.sha1(request.node.name.encode()).hexdigest()[:10]
    case = allowed / name
    outside = allowed.parent / f"outside_{name}"
    outside.mkdir()
    (outside / "secret.txt").write_text("the outside secret")
    (outside / "victim.txt").write_text("overwrite me and you lose")
    (outside / "fakeset2" / "faces").mkdir(parents=True)
    (outside / "fakeset2" / "faces" / "outside.png").write_bytes(pngs(1, 7, "o")[0][1])
    (outside / "fakeset2" / "manifest.json").write_text(json.dumps({"crops": []}))
    export = build_export(case / "export", {0: pngs(4, 1, "a"), 1: pngs(3, 2, "b")})
    return {"address": process.address, "export": export, "outside": outside}


def _call(address: str, method: str, request: object) -> grpc.RpcError | list:
    with grpc.insecure_channel(address) as channel:
        stub = export_pb2_grpc.ExportStub(channel)
        try:
            return list(getattr(stub, method)(request, timeout=60))
        except grpc.RpcError as error:
            return error


def _refused(result: object, *words: str) -> grpc.RpcError:
    assert isinstance(result, grpc.RpcError), f"not refused: {result}"
    assert result.code() == grpc.StatusCode.FAILED_PRECONDITION, result.details()
    for word in words:
        assert word in result.details(), result.details()
    assert "Traceback" not in result.details() and "subpath" not in result.details()
    return result


def _plant_runs(export: Path, *planted: dict) -> None:
    manifest = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    manifest[layout.MAINTENANCE_RUNS] = [*manifest.get(layout.MAINTENANCE_RUNS, []), *planted]
    (export / layout.EXPORT_MANIFEST).write_text(json.dumps(manifest))


def _run(run_id: str, kind: str, *moves: dict) -> dict:
    return {"id": run_id, "kind": kind, "parameters": {}, "moves": list(moves)}


def _move(src: str, dst: str, kind: str = "file") -> dict:
    return {"src": src, "dst": dst, "kind": kind, "reason": "planted", "restored": False}


def test_moves_read_from_the_manifest_never_leave_the_export(setup: dict) -> None:
    """Finding 1: planted maintenance runs that would pull an outside file in, push a PNG out,
    undo an occlusion from outside, or overwrite an outside file with a faceset's manifest."""
    export, outside, address = setup["export"], setup["outside"], setup["address"]
    out_rel = os.path.relpath(outside, export)
    planted = {
        "steal": _move("faceset_001/faces/stolen.png", str(outside / "secret.txt")),
        "push": _move(f"{out_rel}/pushed/escaped.png", "faceset_000/faces/a00.png"),
        "undo": _move("faceset_000/faces/pulled.png", f"{out_rel}/secret.txt"),
    }
    saved = _move(f"{out_rel}/victim.txt", "faceset_000/manifest.json", "saved_manifest")
    folder = _move("faceset_001", "_merged/faceset_001", "faceset")
    _plant_runs(
        export,
        _run("steal", "dedup", planted["steal"]),
        _run("push", "dedup", planted["push"]),
        _run("undo", "occlusion", planted["undo"]),
        _run("merge", "merge", saved, folder),
    )
    export_before, outside_before = tree(export), tree(outside)
    for run_id in ("steal", "push", "undo", "merge"):
        result = _call(
            address, "Restore", export_pb2.RestoreRequest(out=str(export), run_id=run_id)
        )
        _refused(result, run_id, "refused")
    undo = _call(address, "Occlusion", export_pb2.OcclusionRequest(out=str(export), undo=True))
    _refused(undo, "refused")
    for faceset in ("faceset_000", "faceset_001"):
        by_name = _call(
            address, "Restore", export_pb2.RestoreRequest(out=str(export), faceset=faceset)
        )
        _refused(by_name, "refused")
    assert tree(outside) == outside_before
    assert tree(export) == export_before
    assert not (outside / "pushed").exists()


def test_merge_refuses_a_faceset_dir_outside_the_export(setup: dict) -> None:
    """Finding 2: a planted `dir` of ../../outside/fakeset2 moved the outside folder into
    _merged/ (and its PNG into the target), then failed with UNKNOWN: 'merged'."""
    export, outside, address = setup["export"], setup["outside"], setup["address"]
    manifest = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    entry = dict(manifest["facesets"]["faceset_001"])
    manifest["facesets"]["faceset_002"] = entry | {
        "dir": os.path.relpath(outside / "fakeset2", export)
    }
    (export / layout.EXPORT_MANIFEST).write_text(json.dumps(manifest))
    export_before, outside_before = tree(export), tree(outside)
    request = export_pb2.MergeRequest(out=str(export), faceset="faceset_002", into="faceset_000")
    _refused(_call(address, "Merge", request), "faceset_002's dir", "refused")
    request = export_pb2.MergeRequest(out=str(export), faceset="faceset_000", into="faceset_002")
    _refused(_call(address, "Merge", request), "faceset_002's dir")
    assert tree(outside) == outside_before and tree(export) == export_before


def test_dedup_refuses_an_absolute_faceset_dir_with_a_clear_message(setup: dict) -> None:
    """Finding 9: an absolute planted dir ended in Python's 'is not in the subpath of'."""
    export, outside, address = setup["export"], setup["outside"], setup["address"]
    manifest = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    manifest["facesets"]["faceset_001"]["dir"] = str(outside / "fakeset2")
    (export / layout.EXPORT_MANIFEST).write_text(json.dumps(manifest))
    outside_before = tree(outside)
    request = export_pb2.DedupOptimizeRequest(out=str(export))
    _refused(_call(address, "DedupOptimize", request), "faceset_001's dir", "refused")
    assert tree(outside) == outside_before


@pytest.mark.parametrize(
    ("link", "method", "request_of"),
    [
        (
            "faceset_001",
            "ExportSwap",
            lambda out: export_pb2.ExportSwapRequest(
                out=str(out),
                refine_manifest=str(out.parent / "refine_manifest.json"),
                store=str(out.parent / "faces.db"),
            ),
        ),
        ("report", "Report", lambda out: export_pb2.ReportRequest(out=str(out))),
        (
            "faceset_001/faces",
            "DedupOptimize",
            lambda out: export_pb2.DedupOptimizeRequest(out=str(out)),
        ),
        (
            "faceset_001",
            "Merge",
            lambda out: export_pb2.MergeRequest(
                out=str(out), faceset="faceset_001", into="faceset_000"
            ),
        ),
        ("faceset_001/faces", "Occlusion", lambda out: export_pb2.OcclusionRequest(out=str(out))),
    ],
)
def test_a_symlinked_subfolder_of_an_export_is_refused(
    setup: dict, link: str, method: str, request_of
) -> None:
    """Finding 3: ExportSwap wrote 13 files through a linked faceset_001, Report wrote its
    pages through a linked report/ (and deleted a file in its thumbs/), DedupOptimize moved a
    PNG of a linked faces/."""
    export, outside, address = setup["export"], setup["outside"], setup["address"]
    (export.parent / "refine_manifest.json").write_text(
        json.dumps({"facesets": [{"name": "faceset_001", "face_ids": [1]}]})
    )
    target = outside / "linked"
    (target / "thumbs").mkdir(parents=True)
    (target / "thumbs" / ("0" * 24 + ".jpg")).write_bytes(b"an outside file the report would prune")
    (target / "b00.png").write_bytes(pngs(1, 9, "z")[0][1])
    (target / layout.FACESET_MANIFEST).write_text(json.dumps({"crops": []}))
    (target / layout.REPORT_STATE).write_text(json.dumps({"files": ["../victim.txt"]}))
    linked = export / link
    if linked.exists():
        import shutil

        shutil.rmtree(linked)
    linked.symlink_to(target, target_is_directory=True)
    outside_before = tree(outside)
    result = _call(address, method, request_of(export))
    _refused(result, "symbolic link", link)
    assert tree(outside) == outside_before


def _merge(address: str, export: Path) -> str:
    request = export_pb2.MergeRequest(out=str(export), faceset="faceset_001", into="faceset_000")
    events = _call(address, "Merge", request)
    assert isinstance(events, list), events
    return json.loads(events[-1].done.summary_json)["run"]


def test_restore_is_all_or_nothing(setup: dict) -> None:
    """Deliver 3: every move is checked first; one that cannot be made refuses the restore
    and nothing moves (it used to move what it could and leave .fsz files out of step)."""
    export, address = setup["export"], setup["address"]
    run = _merge(address, export)
    merged = tree(export)
    moved = export / "faceset_000" / "faces" / "b02.png"
    kept = moved.read_bytes()
    moved.unlink()  # one PNG the merge moved is gone: it cannot be put back
    without = tree(export)
    result = _call(address, "Restore", export_pb2.RestoreRequest(out=str(export), run_id=run))
    _refused(result, "b02.png", "nothing was restored")
    assert tree(export) == without
    moved.write_bytes(kept)
    assert tree(export) == merged
    done = _call(address, "Restore", export_pb2.RestoreRequest(out=str(export), run_id=run))
    assert isinstance(done, list), done
    assert assert_fsz_match_folders(export) == 4


CRASH = killed_at(
    "facesets.export.maintenance.journal.rename",
    "int(sys.argv[2])",
    """
    from facesets.export.maintenance import restore
    restore.restore(Path(sys.argv[1]), run_id=sys.argv[3])
    """,
)


def test_a_restore_cut_short_is_rolled_back_by_the_next_job(setup: dict) -> None:
    """Deliver 3: a restore that dies after some of its renames leaves a journal; the next job
    on the export rolls it back (files, manifests, .fsz), then does its own work."""
    export, address = setup["export"], setup["address"]
    before = snapshot(export)
    manifests = {
        p: (export / p / "manifest.json").read_bytes() for p in ("faceset_000", "faceset_001")
    }
    run = _merge(address, export)
    merged = tree(export)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(export), "3", run],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert crashed.returncode == 9, crashed.stderr[-2000:]
    assert (export / layout.MAINTENANCE_JOURNAL).is_file()
    assert tree(export) != merged  # half-way: some PNGs are back, the records are not
    # The next job (a report here) rolls the restore back before it reads anything.
    report = _call(address, "Report", export_pb2.ReportRequest(out=str(export)))
    assert isinstance(report, list), report
    assert not (export / layout.MAINTENANCE_JOURNAL).exists()
    rolled = {k: v for k, v in tree(export).items() if not k.startswith(layout.REPORT_DIR)}
    assert rolled == merged
    done = _call(address, "Restore", export_pb2.RestoreRequest(out=str(export), run_id=run))
    assert isinstance(done, list), done
    assert snapshot(export) == before
    assert {p: (export / p / "manifest.json").read_bytes() for p in manifests} == manifests
