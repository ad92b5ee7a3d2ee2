"""What the review app serves comes only from the export's manifests: a crop the manifests do
not list, a path that climbs out, a faceset folder linked elsewhere are all refused."""

from __future__ import annotations

import json
from pathlib import Path

from maintenance_export import build_export, pngs

from facesets.orchestrator.review.export_view import ExportView


def test_images_only_from_the_manifests(tmp_path: Path) -> None:
    out = build_export(tmp_path / "export", {0: pngs(3, 1, "a"), 1: pngs(2, 2, "b")})
    (out / "faceset_000" / "faces" / "stray.png").write_bytes(b"\x89PNG not listed")
    view = ExportView(out)
    found = view.image("faceset_000/faces/a00.png")
    assert found is not None and found[1] == "image/png"
    for rel in (
        "faceset_000/faces/stray.png",
        "faceset_000/manifest.json",
        "../export/faceset_000/faces/a00.png",
        "/etc/passwd",
        "faceset_000/faces/../../faceset_001/faces/b00.png",
    ):
        assert view.image(rel) is None, rel

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "faces").mkdir()
    (outside / "faces" / "b00.png").write_bytes(b"secret")
    real = out / "faceset_001"
    real.rename(tmp_path / "moved")
    real.symlink_to(outside, target_is_directory=True)
    assert view.image("faceset_001/faces/b00.png") is None


def test_overview_reads_partitions_labels_and_lookalikes(tmp_path: Path) -> None:
    out = build_export(tmp_path / "export", {0: pngs(3, 1, "a"), 1: pngs(2, 2, "b")})
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["facesets"]["faceset_001"]["label"] = "Jane Doe"
    manifest["facesets"]["faceset_000"]["person"] = "Ada Immich"  # named by Immich's people
    manifest["lookalikes"] = [{"facesets": ["faceset_000", "faceset_001"], "distance": 0.5}]
    (out / "manifest.json").write_text(json.dumps(manifest))
    snap = ExportView(out).snapshot()
    assert [f.title for f in snap.facesets] == [
        "Ada Immich (faceset_000)",
        "Jane Doe (faceset_001)",
    ]
    assert all("lookalike" in f.flags for f in snap.facesets)
