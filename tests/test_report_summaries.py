"""Issue 31: a review action's report refresh reads again only what changed, and its undo
checks only the folders it touches, through a real export service (the client library) on an
export of LFW crops.

The refresh renders the overview from report/summaries.json, one row per faceset keyed by the
state of its manifests: the touched facesets and any whose manifests changed are read again,
a damaged or planted row is read again too, and the overview it writes is the one a full
`facesets report` writes. Restore walks the facesets its moves touch for symbolic links, not
the whole export (its 20,000 report thumbnails at library scale)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import pytest
from maintenance_export import build_export

from facesets.client import Endpoint, ExportClient
from facesets.contract import layout
from facesets.contract.export import ReportRequest, RestoreRequest
from facesets.contract.review import RejectCropsRequest
from services import NO_PEERS, started_service

SETS = 6
PER_SET = 4
SUMMARIES = Path(layout.REPORT_DIR) / layout.REPORT_SUMMARIES
INDEX = Path(layout.REPORT_DIR) / layout.REPORT_INDEX


def lfw_pngs(lfw: Path, count: int) -> list[bytes]:
    """PNG crops of the central region of the first `count` LFW photos."""
    found = []
    for path in sorted(lfw.glob("*/*.jpg"))[:count]:
        image = cv2.imread(str(path))
        ok, data = cv2.imencode(".png", cv2.resize(image[60:190, 60:190], (112, 112)))
        assert ok
        found.append(data.tobytes())
    return found


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExportClient, Path]]:
    base = tmp_path_factory.mktemp("summaries")
    with started_service("export", base, *NO_PEERS, roots=[base]) as process:
        client = ExportClient(Endpoint(process.address))
        try:
            yield client, base
        finally:
            client.close()


@pytest.fixture
def export(
    service: tuple[ExportClient, Path], lfw_dir: Path, request: pytest.FixtureRequest
) -> Path:
    """SETS facesets of PER_SET LFW crops each, with a full report written."""
    client, base = service
    crops = lfw_pngs(lfw_dir, SETS * PER_SET)
    sets = {
        n: [(f"p{n}_{i}.png", crops[n * PER_SET + i]) for i in range(PER_SET)] for n in range(SETS)
    }
    out = build_export(base / request.node.name / "export", sets)
    for n in range(SETS):  # every crop in the top, scored, as export-swap writes them
        path = out / layout.FACESET_DIR.format(n) / layout.FACESET_MANIFEST
        inner = json.loads(path.read_text())
        for i, crop in enumerate(inner["crops"]):
            crop |= {"in_top": True, "composite": round(0.9 - i / 10, 2), "face_id": n * 10 + i}
        layout.atomic_write_json(path, inner)
    master = json.loads((out / layout.EXPORT_MANIFEST).read_text())
    master["lookalikes"] = [{"facesets": ["faceset_002", "faceset_003"], "distance": 0.5}]
    layout.atomic_write_json(out / layout.EXPORT_MANIFEST, master)
    assert job(client, ReportRequest(out))["report_rows_reused"] == 0
    return out


def job(client: ExportClient, request: object) -> dict:
    events = list(client.run(request))  # type: ignore[arg-type]
    return json.loads(events[-1].done.summary_json)


def reject(client: ExportClient, out: Path, faceset: str, crop: str) -> dict:
    return job(client, RejectCropsRequest(out, faceset, (crop,)))


def full_report_index(client: ExportClient, out: Path) -> str:
    """The overview a full report writes from the manifests as they are now."""
    job(client, ReportRequest(out))
    return (out / INDEX).read_text()


def relabel(out: Path, faceset: str, label: str) -> None:
    """A faceset manifest edited by hand (rewritten whole, as every writer does)."""
    path = out / faceset / layout.FACESET_MANIFEST
    inner = json.loads(path.read_text())
    inner["label"] = label
    layout.atomic_write_json(path, inner)


def test_refresh_and_undo_agree_with_a_full_report(service, export: Path) -> None:
    client, _ = service
    done = reject(client, export, "faceset_001", "p1_2.png")
    assert done["report"]["report_rows_reused"] == SETS - 1  # faceset_001 alone read again
    assert (export / SUMMARIES).is_file()
    refreshed = (export / INDEX).read_text()
    assert (
        'data-faceset="faceset_001" data-partition="facesets" data-flags="" data-size="3"'
        in refreshed
    )
    assert '"../faceset_001/faces/p1_2.png"' not in refreshed
    assert '"../faceset_001/faces/_dropped/p1_2.png"' in refreshed
    assert refreshed == full_report_index(client, export)

    relabel(export, "faceset_003", "Ada Lovelace")  # not touched by the undo: its key changed
    # The pair leaves the look-alike list (faceset_002's own entry and manifest are as they
    # were): its reused row loses the flag the whole export gave it.
    master = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    assert (
        'data-faceset="faceset_002" data-partition="facesets" data-flags="look-alike"' in refreshed
    )
    master["lookalikes"] = []
    layout.atomic_write_json(export / layout.EXPORT_MANIFEST, master)
    undone = job(client, RestoreRequest(export, run_id=str(done["run"])))
    assert undone["report"]["report_rows_reused"] == SETS - 2
    refreshed = (export / INDEX).read_text()
    assert "Ada Lovelace" in refreshed
    assert 'data-faceset="faceset_002" data-partition="facesets" data-flags=""' in refreshed
    assert (
        'data-faceset="faceset_001" data-partition="facesets" data-flags="" data-size="4"'
        in refreshed
    )
    assert '"../faceset_001/faces/p1_2.png"' in refreshed
    assert '"../faceset_001/faces/_dropped/p1_2.png"' not in refreshed
    assert refreshed == full_report_index(client, export)


def test_a_damaged_or_planted_summary_row_is_read_again(service, export: Path) -> None:
    client, base = service
    outside = base / "outside.png"
    outside.write_bytes((export / "faceset_000/faces/p0_0.png").read_bytes())
    saved = json.loads((export / SUMMARIES).read_text())
    rows = {row["name"]: row for row in saved["rows"]}
    # The keys still match: only the values are wrong (a path leaving OUT, a wrong type).
    rows["faceset_002"]["entry"]["crops"][0]["file"] = os.path.relpath(outside, export)
    rows["faceset_002"]["entry"]["label"] = "Planted Label"
    rows["faceset_004"]["entry"]["kept"] = "many"
    rows["faceset_005"]["key"] = "0" * 64  # a stale row
    (export / SUMMARIES).write_text(json.dumps(saved))
    # A thumbnail a reused row names, swapped for a link: made again, not linked to.
    thumb = export / layout.REPORT_DIR / layout.REPORT_THUMBS_DIR
    thumb /= next(iter(rows["faceset_003"]["thumbs"].values()))
    thumb.unlink()
    thumb.symlink_to(outside)
    done = reject(client, export, "faceset_001", "p1_0.png")
    assert done["report"]["report_rows_reused"] == SETS - 4
    assert not thumb.is_symlink() and thumb.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    refreshed = (export / INDEX).read_text()
    assert "Planted Label" not in refreshed and "outside.png" not in refreshed
    assert refreshed == full_report_index(client, export)

    (export / SUMMARIES).write_text("{ not json")
    undone = job(client, RestoreRequest(export, run_id=str(done["run"])))
    assert undone["report"]["report_rows_reused"] == 0
    assert (export / INDEX).read_text() == full_report_index(client, export)
    assert json.loads((export / SUMMARIES).read_text())["version"] == 1


def test_undo_walks_only_the_folders_its_moves_touch(service, export: Path) -> None:
    client, base = service
    done = reject(client, export, "faceset_001", "p1_1.png")
    outside = base / "outside_folder"
    outside.mkdir(exist_ok=True)
    (outside / "keep.txt").write_text("mine")
    # A link inside the folder the undo moves files in: refused, nothing put back.
    link = export / "faceset_001" / layout.CROPS_DIR / "elsewhere"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(grpc.RpcError) as refused:
        job(client, RestoreRequest(export, run_id=str(done["run"])))
    assert "symbolic link" in str(refused.value.details())
    assert (export / "faceset_001/faces/_dropped/p1_1.png").is_file()
    assert not (export / "faceset_001/faces/p1_1.png").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    link.unlink()
    # A link in a faceset the undo does not touch is not its business (nothing is read
    # through it); that faceset's own jobs refuse it.
    (export / "faceset_004" / "elsewhere").symlink_to(outside, target_is_directory=True)
    undone = job(client, RestoreRequest(export, run_id=str(done["run"])))
    assert [m["src"] for m in undone["restored"]] == ["faceset_001/faces/p1_1.png"]
    assert (export / "faceset_001/faces/p1_1.png").is_file()
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
