"""Sharpness that means the same at every resolution: the inference service on the mini pack
measures the same LFW faces alike at 1x, 2x and 4x (bicubic), a Gaussian-blurred copy far lower;
stores of the earlier measure get the new one through `facesets enrich`, once."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesets.client import Endpoint, ImageInput, InferenceClient
from facesets.clustering.store import FaceData, FaceStore, ImageData
from facesets.common.server import ServeOptions, start_server
from facesets.common.settings import InferenceSettings, RuntimeSettings
from facesets.inference import servicer as inference
from facesets.inference.models import laplacian_blur
from facesets.v1 import common_pb2
from services import run_facesets, running_services, service_flags

PEOPLE = ("Colin_Powell", "Serena_Williams", "Tony_Blair", "Gerhard_Schroeder")
FACTORS = (1, 2, 4)


@pytest.fixture(scope="module")
def client(model_root):
    config = InferenceSettings(
        model_root=model_root,
        model_pack="facepack-mini",
        runtime=RuntimeSettings(providers=("cpu",)),
    )
    running = start_server(
        ServeOptions(listen="127.0.0.1:0"),
        inference.register(inference.build(config)),
        [inference.SERVICE_NAME],
    )
    client = InferenceClient(Endpoint(running.address))
    yield client
    client.close()
    running.stop(0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


@pytest.fixture(scope="module")
def versions(lfw_dir, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per LFW photo: itself, its 2x and 4x bicubic enlargements and a blurred copy (PNG)."""
    folder = tmp_path_factory.mktemp("scaled")
    found: dict[str, dict[str, Path]] = {}
    for person in PEOPLE:
        for photo in sorted((lfw_dir / person).glob("*.jpg"))[:3]:
            image = cv2.imread(str(photo))
            paths = {"1x": photo}
            for factor in FACTORS[1:]:
                path = folder / f"{photo.stem}_{factor}x.png"
                enlarged = cv2.resize(
                    image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC
                )
                cv2.imwrite(str(path), enlarged)
                paths[f"{factor}x"] = path
            paths["blurred"] = folder / f"{photo.stem}_blurred.png"
            cv2.imwrite(str(paths["blurred"]), cv2.GaussianBlur(image, (0, 0), 2))
            found[photo.stem] = paths
    return found


def test_the_same_face_is_as_sharp_at_1x_2x_and_4x_and_a_blurred_copy_far_less(client, versions):
    inputs = [
        ImageInput(id=f"{stem}|{k}", path=str(p))
        for stem, v in versions.items()
        for k, p in v.items()
    ]
    results = {r.id: r for r in client.embed(iter(inputs))}
    sharp: dict[str, list[float]] = {k: [] for k in ("1x", "2x", "4x", "blurred")}
    earlier: dict[str, list[float]] = {"1x": [], "4x": []}
    for stem, paths in versions.items():
        native = results[f"{stem}|1x"]
        assert native.faces, stem
        base = max(native.faces, key=lambda f: f.det_score)
        box = np.asarray(base.bbox)
        per_version = {}
        for key, factor in (("1x", 1), ("2x", 2), ("4x", 4), ("blurred", 1)):
            faces = results[f"{stem}|{key}"].faces
            face = max(faces, key=lambda f: _iou(np.asarray(f.bbox) / factor, box))
            assert _iou(np.asarray(face.bbox) / factor, box) > 0.7, (stem, key)
            assert face.blur_measure == common_pb2.BLUR_MEASURE_CANONICAL
            per_version[key] = face.blur
            sharp[key].append(face.blur)
        # Each face alike at every scale (within 20% of its native score) ...
        for key in ("2x", "4x"):
            assert 0.8 <= per_version[key] / per_version["1x"] <= 1.2, (stem, per_version)
        # ... and its blurred copy below it.
        assert per_version["blurred"] < per_version["1x"], (stem, per_version)
        for key, factor in (("1x", 1), ("4x", 4)):
            image = cv2.imread(str(paths[key]))
            earlier[key].append(laplacian_blur(image, box * factor))
    means = {key: float(np.mean(values)) for key, values in sharp.items()}
    assert means["blurred"] * 3 <= means["1x"], means
    for key in ("2x", "4x"):
        assert abs(means[key] / means["1x"] - 1) <= 0.2, means
    # The earlier measure, on the same faces, falls with the enlargement (what this replaces).
    assert np.mean(earlier["4x"]) < 0.2 * np.mean(earlier["1x"])


def _face(blur: float, measure: int) -> FaceData:
    return FaceData(
        bbox=(10.0, 10.0, 110.0, 130.0),
        kps=np.zeros((5, 2), np.float32),
        det_score=0.9,
        embedding=None,
        face_short=100.0,
        blur=blur,
        blur_measure=measure,
    )


def test_a_store_of_the_earlier_version_opens_and_its_faces_take_the_new_measure_once(tmp_path):
    path = tmp_path / "faces.db"
    store = FaceStore(path)
    store.add_images([ImageData(sha256="a" * 64, path="/x.jpg", size=1, faces=[_face(250.0, 0)])])
    store.close()
    with sqlite3.connect(path) as db:  # as version 2 left it: no blur_measure column
        db.execute("ALTER TABLE faces DROP COLUMN blur_measure")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = FaceStore(path)
    table = store.face_table(with_embeddings=False)
    assert table.blur_measure.tolist() == [0] and table.blur.tolist() == [250.0]
    assert store.meta()["schema_version"] == "3"
    face_id = int(table.face_id[0])
    store.update_faces([(face_id, _face(18.5, common_pb2.BLUR_MEASURE_CANONICAL))])
    # A later update of the earlier measure (an older inference service) does not undo it.
    store.update_faces([(face_id, _face(300.0, 0))])
    table = store.face_table(with_embeddings=False)
    assert table.blur.tolist() == [18.5]
    assert table.blur_measure.tolist() == [common_pb2.BLUR_MEASURE_CANONICAL]
    store.close()


@pytest.fixture
def services(shared_dir: Path, tmp_path: Path):
    """A pair of services the embed and enrich commands share (their start-up is tested
    elsewhere)."""
    (tmp_path / "services").mkdir()
    with running_services(tmp_path / "services", [tmp_path, shared_dir]) as started:
        yield service_flags(started, "embed")


def test_enrich_measures_faces_of_the_earlier_measure_again_exactly_once(
    lfw_dir, tmp_path, services
):
    src = tmp_path / "photos"
    src.mkdir()
    for photo in sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[:5]:
        shutil.copy(photo, src / photo.name)
    store = tmp_path / "faces.db"
    assert run_facesets("embed", str(src), str(store), *services).returncode == 0
    with sqlite3.connect(store) as db:
        measured = dict(db.execute("SELECT face_id, blur FROM faces").fetchall())
        # As an earlier version stored them: the size-dependent measure, flagged as such.
        db.execute("UPDATE faces SET blur = blur * 10 + 1, blur_measure = 0")
    first = run_facesets("enrich", str(store), "--json", *services)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["faces_earlier_sharpness"] == len(measured)
    assert summary["faces_updated"] == len(measured)
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT face_id, blur, blur_measure FROM faces").fetchall()
    for face_id, blur, measure in rows:
        assert measure == common_pb2.BLUR_MEASURE_CANONICAL
        assert blur == pytest.approx(measured[face_id], rel=1e-5)
    again = json.loads(run_facesets("enrich", str(store), "--json", *services).stdout)
    assert again["faces_lacking"] == 0 and again["faces_updated"] == 0
