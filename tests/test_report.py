"""The HTML review report, checked as rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_export_core import copy_people, labelled_row, make_analyser, make_counter

from facesets.contract import layout
from facesets.contract.export import ExportSwapParams
from facesets.export.crops import load_image_oriented
from facesets.export.report import ReportError, write_report
from facesets.export.swap import export_swap

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ODD_FOLDER = "Tony Blair #1 & <co>"  # needs HTML escaping and URL quoting


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (`make install` installs it with apt-get)")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",  # lets the load event and the inline script run
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def rendered_dom(profile: Path, page: Path) -> str:
    return chromium(profile, "--dump-dom", page.as_uri()).stdout


@pytest.fixture(scope="module")
def export_dir(lfw_dir: Path, model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export made in two runs (so the report reads a merged manifest), with candidates
    and a planted outlier, one person's photos in a folder with an awkward name."""
    analyser = make_analyser(model_root)
    count_faces = make_counter(model_root)
    root = tmp_path_factory.mktemp("photos")
    photos = copy_people(
        lfw_dir,
        root,
        {"Colin_Powell": range(1, 5), "Tony_Blair": range(1, 5), "George_W_Bush": range(20, 22)},
        folder_names={"Tony_Blair": ODD_FOLDER},
    )
    ids = iter(range(1, 1000))
    powell = [labelled_row(analyser, next(ids), p) for p in photos["Colin_Powell"]]
    blair = [labelled_row(analyser, next(ids), p) for p in photos["Tony_Blair"]]
    bush = [labelled_row(analyser, next(ids), p) for p in photos["George_W_Bush"]]
    out = tmp_path_factory.mktemp("export")
    common = {"load_image": load_image_oriented, "count_faces": count_faces}
    params = ExportSwapParams(top_n=3, min_face_short=80)
    export_swap({1: [*powell, bush[0]]}, out, params, **common)
    # Blair's best photo as a candidate: close to faceset 2, which holds his other photos.
    others = [blair[0], *blair[2:]]
    export_swap({2: others}, out, params, candidates=[blair[1], bush[1]], **common)
    return out


def expected_images(out: Path) -> int:
    top = json.loads((out / layout.EXPORT_MANIFEST).read_text())
    count = len(top.get("candidates", {}).get("items", []))
    for entry in top["facesets"].values():
        manifest = json.loads((out / entry["manifest"]).read_text())
        count += sum(1 for c in manifest["crops"] if c["in_top"])
        count += sum(1 for d in manifest["dropped"] if "thumbnail" in d)
    return count


def test_report_renders_every_faceset_with_its_images(
    export_dir: Path, tmp_path: Path, artifacts_dir: Path
) -> None:
    page = write_report(export_dir)
    assert page == export_dir / layout.REPORT_DIR / layout.REPORT_INDEX
    top = json.loads((export_dir / layout.EXPORT_MANIFEST).read_text())
    assert sorted(top["facesets"]) == ["faceset_001", "faceset_002"]
    assert top["candidates"]["items"], "the export should offer a candidate"

    dom = rendered_dom(tmp_path / "profile", page)
    cards = re.findall(r'<section class="card" data-faceset="([^"]+)"', dom)
    assert cards == ["faceset_001", "faceset_002"]
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None
    assert 'data-images="ok"' in body.group(1), body.group(1)
    count = re.search(r'data-image-count="(\d+)"', body.group(1))
    assert count is not None and int(count.group(1)) == expected_images(export_dir)
    assert 'data-section="candidates"' in dom and 'data-section="dropped"' in dom
    assert "outlier" in dom  # the planted stranger, with its reason
    # The awkward folder name is shown as text, never parsed as markup.
    assert "Tony Blair #1 &amp; &lt;co&gt;" in dom and "<co>" not in dom

    shot = artifacts_dir / "report.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.std() > 20, "the screenshot is blank"


def test_report_notices_a_missing_crop(export_dir: Path, tmp_path: Path) -> None:
    """The image check can fail: a crop removed behind the report's back shows as broken."""
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    manifest = json.loads((copy / "faceset_001" / layout.FACESET_MANIFEST).read_text())
    (copy / manifest["crops"][0]["file"]).unlink()
    dom = rendered_dom(tmp_path / "profile", write_report(copy))
    assert 'data-images="broken:1"' in dom


def test_report_needs_an_export(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no export manifest"):
        write_report(tmp_path)
    assert not (tmp_path / layout.REPORT_DIR).exists()
