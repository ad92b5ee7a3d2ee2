"""`facesets run SRC OUT`: the whole pipeline through real services, twice."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile

import cv2
import numpy as np
import pytest
from conftest import reference_session_options
from insightface.model_zoo import model_zoo

from facesets.contract import layout
from services import run_facesets

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder")


@pytest.fixture(scope="module")
def pipeline(lfw_dir, tmp_path_factory):
    src = tmp_path_factory.mktemp("photos")
    for person in PEOPLE:
        for photo in sorted((lfw_dir / person).glob("*.jpg"))[:12]:
            (src / person).mkdir(exist_ok=True)
            shutil.copy(photo, src / person / photo.name)
    for person in sorted(p for p in lfw_dir.iterdir() if p.name.startswith("Z"))[:6]:
        shutil.copy(sorted(person.glob("*.jpg"))[0], src / f"{person.name}.jpg")
    out = tmp_path_factory.mktemp("out")
    first = run_facesets("run", str(src), str(out), "--min-faces", "5", "--json", timeout=900)
    assert first.returncode == 0, first.stderr
    return src, out, json.loads(first.stdout)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.fsz")}


def test_run_produces_roop_ready_facesets_and_a_report(pipeline, model_root):
    _, out, results = pipeline
    export = out / "export"
    assert results["refine"]["facesets"] >= 3
    bundles = sorted(export.rglob("*.fsz"))
    assert len(bundles) >= 2 * results["refine"]["facesets"]
    detector = model_zoo.get_model(
        str(model_root / "models" / "facepack-mini" / "det_scrfd_2.5g_bnkps.onnx"),
        providers=["CPUExecutionProvider"],
        sess_options=reference_session_options(),
    )
    detector.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    checked = 0
    for bundle in bundles:
        with zipfile.ZipFile(bundle) as archive:
            names = archive.namelist()
            assert names and all("/" not in n and n.endswith(".png") for n in names)
            for name in names[:3]:
                image = cv2.imdecode(np.frombuffer(archive.read(name), np.uint8), cv2.IMREAD_COLOR)
                assert image.shape[:2] == (512, 512)
                boxes, _ = detector.detect(image, input_size=(640, 640))
                assert len(boxes) == 1, f"{bundle.name}/{name} holds {len(boxes)} faces"
                checked += 1
    assert checked >= 6
    report = export / "report" / "index.html"
    assert report.is_file() and results["report"] == str(report)
    assert report.read_text().count("data-faceset=") >= results["refine"]["facesets"]


def test_rerun_is_idempotent(pipeline):
    src, out, results = pipeline
    before = _digests(out)
    again = run_facesets("run", str(src), str(out), "--min-faces", "5", "--json", timeout=900)
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["embed"]["embedded"] == 0
    assert rerun["refine"]["facesets"] == results["refine"]["facesets"]
    assert _digests(out) == before


def test_a_second_run_into_the_same_out_is_refused(pipeline):
    from filelock import FileLock

    src, out, _ = pipeline
    before = _digests(out)
    with FileLock(out / layout.WRITER_LOCK):  # as the first run holds it while it works
        second = run_facesets("run", str(src), str(out), "--json", timeout=900)
    assert second.returncode != 0
    assert "being written by another facesets job" in second.stderr
    assert _digests(out) == before
