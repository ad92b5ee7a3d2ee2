"""Runs where no face passes the gates end well and say why: `facesets run` and
`facesets immich import` on blurred photos exit 0, print the faces each gate removed, and
write a report whose first screen says that no faceset passed, gate by gate."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from fake_immich import FakeImmich, lfw_library
from test_report import CHROMIUM, rendered_dom

from facesets.contract import gates, layout
from facesets.export.report import write_report
from services import run_facesets, running_services, service_flags

PEOPLE = ("Colin_Powell", "Tony_Blair")
KEY = "empty-test-key-0001"


@pytest.fixture(scope="module")
def blurred(lfw_dir, tmp_path_factory) -> Path:
    """Photos of two people whose faces are all out of focus (Gaussian, sigma 4 px)."""
    src = tmp_path_factory.mktemp("blurred")
    for person in PEOPLE:
        (src / person).mkdir()
        for photo in sorted((lfw_dir / person).glob("*.jpg"))[:8]:
            image = cv2.GaussianBlur(cv2.imread(str(photo)), (0, 0), 4)
            cv2.imwrite(str(src / person / photo.name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return src


@pytest.fixture(scope="module")
def services(shared_dir, tmp_path_factory) -> Iterator[list[str]]:
    """The services `run` and `immich import` share here (their start-up is tested elsewhere)."""
    roots = [tmp_path_factory.getbasetemp(), shared_dir]
    with running_services(tmp_path_factory.mktemp("services"), roots) as started:
        yield service_flags(started, "run")


def _first_screen(page: Path, profile: Path) -> str:
    """The page as the browser built it (chromium where installed, else the HTML), up to
    the faceset list: what a reader sees first."""
    html = rendered_dom(profile, page) if CHROMIUM else page.read_text()
    assert "<h1>facesets export</h1>" in html
    return html[: html.index("<h2>Facesets</h2>")]


def _assert_explained(text: str, counts: dict[str, int]) -> None:
    assert "no faceset was produced" in text
    for label, count, _ in gates.rows({"removed": counts}):
        assert re.search(rf"{label}\s+{count} removed", text), (label, count, text)


def test_run_where_nothing_passes_exits_0_and_explains_gate_by_gate(blurred, services, tmp_path):
    out = tmp_path / "out"
    done = run_facesets("run", str(blurred), str(out), "--min-faces", "5", *services, timeout=900)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / layout.RUN_REFINE_DIR / layout.REFINE_MANIFEST).read_text())
    counts = manifest["gates"]["removed"]
    assert manifest["facesets"] == [] and manifest["gates"]["kept"] == 0
    assert manifest["gates"]["faces"] >= 14
    assert counts["blur"] >= 1  # the out-of-focus faces are the sharpness gate's
    assert sum(counts.values()) == manifest["gates"]["faces"]
    _assert_explained(done.stdout, counts)
    assert "sharpness below 4" in done.stdout

    page = out / layout.RUN_EXPORT_DIR / layout.REPORT_DIR / layout.REPORT_INDEX
    first = _first_screen(page, tmp_path / "profile")
    assert 'data-section="empty"' in first and "No faceset" in first
    assert re.search(rf'<td>sharpness</td><td class="?n"?>{counts["blur"]}</td>', first)


def test_immich_import_where_nothing_passes_exits_0_and_reports_why(blurred, services, tmp_path):
    staging = tmp_path / "staging"
    common = ["--user", "bob", "--staging-root", str(staging)]
    env = {**os.environ, "IMMICH_URL": "", "IMMICH_API_KEY": KEY}
    with FakeImmich(lfw_library(sorted(blurred.rglob("*.jpg"))), KEY) as fake:
        staged = run_facesets(
            "immich", "stage", *common, "--no-progress", env={**env, "IMMICH_URL": fake.url}
        )
        assert staged.returncode == 0, staged.stderr
    env["IMMICH_URL"] = "http://127.0.0.1:9"
    done = run_facesets(
        "immich", "import", *common, "--min-faces", "5", *services, env=env, timeout=900
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((staging / "bob" / "facesets" / layout.REFINE_MANIFEST).read_text())
    assert manifest["facesets"] == []
    assert manifest["gates"]["stage"] == "route" and manifest["gates"]["faces"] >= 14
    _assert_explained(done.stdout, manifest["gates"]["removed"])

    page = staging / "bob" / "export" / layout.REPORT_DIR / layout.REPORT_INDEX
    first = _first_screen(page, tmp_path / "profile")
    assert 'data-section="empty"' in first and "faces considered by route" in first


def test_a_report_of_zero_facesets_is_valid_and_says_so_without_gate_counts(tmp_path):
    layout.atomic_write_json(tmp_path / layout.EXPORT_MANIFEST, {"version": 1, "facesets": {}})
    html = write_report(tmp_path).read_text()
    assert 'data-section="empty"' in html and "no per-gate counts" in html


def test_explain_empty_is_silent_when_facesets_were_made():
    summary = {"facesets": 2, "gates": {"faces": 40, "removed": {"blur": 3}, "kept": 37}}
    assert gates.explain_empty(summary) == ""
    text = gates.explain_empty({**summary, "facesets": 0})
    assert "most faces were removed by sharpness" in text
