"""Photos as phones take them: HEIC/HEIF and AVIF decoded like JPEG (orientation, capture time,
limits, damage), the scanner's extensions agreeing with the decoder, skipped files reported."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from images import SUFFIXES, encode_as, heif_burst, heif_claiming, truncated
from PIL import Image

from facesets.client import Endpoint, ImageInput, InferenceClient
from facesets.common.decode import DecodeError, decode
from facesets.common.server import ServeOptions, start_server
from facesets.common.settings import InferenceSettings, RuntimeSettings
from facesets.contract import photo_formats
from facesets.inference import servicer as inference
from facesets.orchestrator.scan import FOLDER_LINK, HIDDEN, list_photos
from facesets.v1 import common_pb2
from services import run_facesets, running_services, service_flags

LIMIT = 120_000_000
CAPTURED = "2021:05:02 09:41:00"
PHOTOS = [
    ("George_W_Bush", "George_W_Bush_0001.jpg"),
    ("Colin_Powell", "Colin_Powell_0002.jpg"),
    ("Serena_Williams", "Serena_Williams_0001.jpg"),
    ("Tony_Blair", "Tony_Blair_0003.jpg"),
]


def _reason(error: DecodeError) -> str:
    return common_pb2.ErrorReason.Name(error.reason)


def _cosine(a: bytes, b: bytes) -> float:
    x, y = np.frombuffer(a, "<f4"), np.frombuffer(b, "<f4")
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


# --- one list of formats, read by the scanner and the decoder ------------------------------------
def test_every_listed_extension_is_decoded_and_nothing_else(tmp_path):
    gradient = Image.linear_gradient("L").resize((64, 48)).convert("RGB")
    for ext, formats in photo_formats.PHOTO_FORMATS.items():
        buffer = io.BytesIO()
        options = {"quality": 90} if formats[0] in ("HEIF", "AVIF") else {}
        gradient.save(buffer, formats[0], **options)
        (tmp_path / f"photo{ext.upper()}").write_bytes(buffer.getvalue())
        decoded = decode(buffer.getvalue(), LIMIT)
        assert (decoded.width, decoded.height) == (64, 48), ext
    listed = list_photos(tmp_path)
    assert len(listed.photos) == len(photo_formats.PHOTO_FORMATS)  # upper case names too
    assert listed.skipped == []
    # A format Pillow reads but no photo extension names is refused, whatever the name says.
    icon = io.BytesIO()
    gradient.save(icon, "ICO")
    with pytest.raises(DecodeError) as refused:
        decode(icon.getvalue(), LIMIT)
    assert _reason(refused.value) == "ERROR_REASON_NOT_AN_IMAGE"


def test_scanner_lists_photos_in_any_case_and_counts_the_rest_by_extension(tmp_path):
    for name in ("a.HEIC", "b.Avif", "c.jpg", "d.hif", "e.JPEG"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "clips").mkdir()
    for name in ("one.mov", "two.MOV", "three.mp4", "a.HEIC.xmp", "notes.txt", "README"):
        (tmp_path / "clips" / name).write_bytes(b"x")
    (tmp_path / "._a.HEIC").write_bytes(b"x")  # a macOS resource fork beside the photo
    (tmp_path / "elsewhere").symlink_to(tmp_path / "clips", target_is_directory=True)
    listed = list_photos(tmp_path)
    assert [Path(p).name for p in listed.photos] == ["a.HEIC", "b.Avif", "c.jpg", "d.hif", "e.JPEG"]
    assert listed.skipped_by_kind() == {
        ".mov": 2,
        photo_formats.NO_EXTENSION: 1,
        ".mp4": 1,
        ".txt": 1,
        ".xmp": 1,
        FOLDER_LINK: 1,
        HIDDEN: 1,
    }
    assert {s.why for s in listed.skipped} == {
        "not a photo format read here",
        "hidden file",
        "links are not followed",
    }


# --- decoding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_orientation_and_capture_time_are_read_as_for_jpeg(lfw_dir, fmt):
    photo = lfw_dir / "George_W_Bush" / "George_W_Bush_0001.jpg"
    upright = decode(photo.read_bytes(), LIMIT)
    data = encode_as(photo, fmt, rotated=True, capture_time=CAPTURED, lossless=True)
    decoded = decode(data, LIMIT)
    jpeg = decode(encode_as(photo, "JPEG", rotated=True, capture_time=CAPTURED), LIMIT)
    assert (decoded.width, decoded.height) == (jpeg.width, jpeg.height) == (250, 250)
    assert decoded.capture_time == jpeg.capture_time == "2021-05-02T09:41:00"
    assert decoded.bgr.shape == upright.bgr.shape
    # Lossless: the upright pixels of the original JPEG, once the orientation is applied.
    assert np.abs(decoded.bgr.astype(int) - upright.bgr.astype(int)).max() <= 1


def test_damaged_and_oversized_heic_get_their_reasons(lfw_dir):
    photo = lfw_dir / "Tony_Blair" / "Tony_Blair_0001.jpg"
    good = encode_as(photo, "HEIF")
    cases = {
        "cut in half": (truncated(good, 0.5), "ERROR_REASON_CORRUPT"),
        "tail cut": (good[:-64], "ERROR_REASON_CORRUPT"),
        "header only": (good[:40], "ERROR_REASON_CORRUPT"),
        # The pixels only hold 250x250: refused from the header, before any decoding.
        "claims 30000x30000": (heif_claiming(photo, 30000, 30000), "ERROR_REASON_TOO_MANY_PIXELS"),
        "avif cut": (truncated(encode_as(photo, "AVIF"), 0.6), "ERROR_REASON_CORRUPT"),
    }
    for name, (data, reason) in cases.items():
        with pytest.raises(DecodeError) as caught:
            decode(data, LIMIT)
        assert _reason(caught.value) == reason, f"{name}: {caught.value.message}"
        assert caught.value.message
    with pytest.raises(DecodeError, match="30000x30000"):
        decode(heif_claiming(photo, 30000, 30000), LIMIT)


def test_a_heic_of_several_images_yields_its_primary(lfw_dir):
    primary = lfw_dir / "Serena_Williams" / "Serena_Williams_0001.jpg"
    others = [Image.new("RGB", (320, 240), (200, 30, 30)), Image.new("RGB", (300, 200))]
    decoded = decode(heif_burst(primary, others, primary_index=1), LIMIT)
    assert (decoded.width, decoded.height) == (250, 250)
    original = decode(primary.read_bytes(), LIMIT).bgr.astype(float)
    assert np.abs(decoded.bgr.astype(float) - original).mean() < 3


# --- through a real inference service on the mini pack --------------------------------------------
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


def test_heic_and_avif_embed_the_same_faces_as_the_jpeg(client, lfw_dir):
    inputs, photos = [], [lfw_dir / person / name for person, name in PHOTOS]
    for i, photo in enumerate(photos):
        inputs.append(ImageInput(id=f"jpeg{i}", data=photo.read_bytes()))
        for fmt in ("HEIF", "AVIF"):
            # Lossy at high quality, as a phone stores them; every other one rotated by EXIF.
            data = encode_as(photo, fmt, rotated=i % 2 == 1, capture_time=CAPTURED)
            inputs.append(ImageInput(id=f"{fmt}{i}", data=data))
    others = [Image.new("RGB", (320, 240), (20, 90, 160))]
    inputs.append(ImageInput(id="burst", data=heif_burst(photos[0], others, primary_index=1)))
    results = {r.id: r for r in client.embed(inputs)}
    assert not [r.id for r in results.values() if r.HasField("error")]
    compared = 0
    for i in range(len(photos)):
        jpeg = results[f"jpeg{i}"]
        assert jpeg.faces
        for other in (results[f"HEIF{i}"], results[f"AVIF{i}"]):
            assert (other.width, other.height) == (jpeg.width, jpeg.height)
            assert other.capture_time == "2021-05-02T09:41:00"
            assert len(other.faces) == len(jpeg.faces)
            for face in jpeg.faces:
                match = min(other.faces, key=lambda f: np.abs(np.subtract(f.bbox, face.bbox)).sum())
                assert np.abs(np.subtract(match.bbox, face.bbox)).max() < 4
                assert _cosine(match.embedding, face.embedding) >= 0.99
                compared += 1
    assert compared >= 2 * len(photos)
    burst, first = results["burst"], results["jpeg0"]
    assert len(burst.faces) == len(first.faces)
    assert _cosine(burst.faces[0].embedding, first.faces[0].embedding) >= 0.99


# --- `facesets embed`: the summary counts what was skipped ----------------------------------------
@pytest.fixture(scope="module")
def mixed_folder(lfw_dir, tmp_path_factory):
    """The same photos as JPEG, HEIC (upper case names, as iPhones write them) and AVIF, bad
    HEIC files, and files that are no photos."""
    root = tmp_path_factory.mktemp("phone")
    for person, name in PHOTOS[:3]:
        photo = lfw_dir / person / name
        stem = Path(name).stem
        shutil.copy(photo, root / name)
        (root / f"{stem}.HEIC").write_bytes(encode_as(photo, "HEIF", capture_time=CAPTURED))
        (root / f"{stem}.avif").write_bytes(encode_as(photo, "AVIF", rotated=True))
    photo = lfw_dir / "Tony_Blair" / "Tony_Blair_0001.jpg"
    (root / "bad").mkdir()
    (root / "bad" / "cut.heic").write_bytes(truncated(encode_as(photo, "HEIF")))
    (root / "bad" / "huge.heic").write_bytes(heif_claiming(photo, 30000, 30000))
    for name in ("IMG_0001.MOV", "IMG_0002.mov", "IMG_0001.HEIC.xmp", "notes.txt"):
        (root / "other" / name).parent.mkdir(exist_ok=True)
        (root / "other" / name).write_bytes(b"not a photo")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def test_embed_reads_phone_formats_and_counts_skipped_files(mixed_folder, started, tmp_path):
    store = tmp_path / "faces.db"
    flags = service_flags(started, "embed")
    done = run_facesets("embed", str(mixed_folder), str(store), "--json", *flags)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    expected = {".mov": 2, "hidden": 1, ".txt": 1, ".xmp": 1}
    assert summary["skipped"] == expected
    assert "skipped 5 files: .mov 2, .txt 1, .xmp 1, hidden 1" in done.stderr
    assert summary["files"] == 3 * 3 + 2
    assert summary["store"]["images"] == 9
    assert summary["store"]["errors_by_reason"] == {
        "ERROR_REASON_CORRUPT": 1,
        "ERROR_REASON_TOO_MANY_PIXELS": 1,
    }
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT i.path, i.width, i.height, i.capture_time, i.error_reason, f.embedding "
            "FROM images i LEFT JOIN faces f ON f.sha256 = i.sha256 ORDER BY f.det_score"
        ).fetchall()
    by_path = {Path(path).name: (w, h, t, e, emb) for path, w, h, t, e, emb in rows}
    assert by_path["cut.heic"][3] == "ERROR_REASON_CORRUPT"
    assert by_path["huge.heic"][3] == "ERROR_REASON_TOO_MANY_PIXELS"
    for _person, name in PHOTOS[:3]:
        stem = Path(name).stem
        jpeg, heic, avif = by_path[name], by_path[f"{stem}.HEIC"], by_path[f"{stem}.avif"]
        assert heic[:2] == avif[:2] == jpeg[:2] == (250, 250)
        assert heic[2] == "2021-05-02T09:41:00"
        assert _cosine(heic[4], jpeg[4]) >= 0.99 and _cosine(avif[4], jpeg[4]) >= 0.99

    listed = run_facesets(
        "embed", str(mixed_folder), str(store), "--verbose", "--inference", "127.0.0.1:9",
        "--clustering", started["clustering"].address,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    for name in ("IMG_0001.MOV", "IMG_0002.mov", "IMG_0001.HEIC.xmp", "notes.txt", ".DS_Store"):
        assert any(
            line.startswith("skipped ") and line.split()[1].endswith(os.sep + name)
            for line in listed.stderr.splitlines()
        ), name
    assert "skipped           5  (.mov 2, .txt 1, .xmp 1, hidden 1)" in listed.stdout


@pytest.fixture(scope="module")
def started(shared_dir, tmp_path_factory):
    """The services the `embed`, `run` and `immich import` commands share (their start-up is
    tested elsewhere)."""
    roots = [tmp_path_factory.getbasetemp(), shared_dir]
    with running_services(tmp_path_factory.mktemp("services"), roots) as services:
        yield services


@pytest.fixture(scope="module")
def services(started):
    return service_flags(started, "run")


# --- `facesets run`: the same facesets from the JPEGs and from a mix of formats -------------------
RUN_PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")


def _facesets_by_photo(out: Path) -> set[frozenset[str]]:
    """Each faceset as the set of `person/stem` of its photos, whatever their format."""
    with sqlite3.connect(out / "faces.db") as db:
        paths = dict(db.execute("SELECT sha256, path FROM images"))
    manifest = json.loads((out / "refined" / "refine_manifest.json").read_text())
    return {
        frozenset(
            f"{Path(paths[sha]).parent.name}/{Path(paths[sha]).stem}" for sha in entry["photos"]
        )
        for entry in manifest["facesets"]
    }


@pytest.mark.slow
def test_run_on_mixed_formats_gives_the_facesets_of_the_jpegs(lfw_dir, tmp_path, services):
    jpegs, mixed = tmp_path / "jpegs", tmp_path / "mixed"
    for person in RUN_PEOPLE:
        (jpegs / person).mkdir(parents=True)
        (mixed / person).mkdir(parents=True)
        for i, photo in enumerate(sorted((lfw_dir / person).glob("*.jpg"))[:7]):
            shutil.copy(photo, jpegs / person / photo.name)
            fmt = ("JPEG", "HEIF", "AVIF")[i % 3]
            target = mixed / person / (photo.stem + SUFFIXES[fmt])
            if fmt == "JPEG":
                shutil.copy(photo, target)
            else:
                target.write_bytes(encode_as(photo, fmt, rotated=i % 2 == 0, lossless=True))
    (mixed / "IMG_0001.MOV").write_bytes(b"a clip")
    results = {}
    for name, src in (("jpegs", jpegs), ("mixed", mixed)):
        out = tmp_path / f"out-{name}"
        done = run_facesets(
            "run", str(src), str(out), "--min-faces", "4", "--json", *services, timeout=900
        )
        assert done.returncode == 0, done.stderr
        results[name] = (json.loads(done.stdout), _facesets_by_photo(out), done.stderr)
    jpeg_summary, jpeg_sets, _ = results["jpegs"]
    mixed_summary, mixed_sets, mixed_err = results["mixed"]
    assert len(jpeg_sets) == len(RUN_PEOPLE)
    assert mixed_sets == jpeg_sets
    assert mixed_summary["embed"]["store"]["faces"] == jpeg_summary["embed"]["store"]["faces"]
    assert mixed_summary["embed"]["skipped"] == {".mov": 1}
    assert "skipped 1 file: .mov 1" in mixed_err


# --- Immich: HEIC and AVIF originals are staged as they are, and embedded -------------------------
IMMICH_KEY = "phone-formats-key-0001"


def test_immich_heic_and_avif_originals_are_staged_unchanged_and_embedded(
    lfw_dir, tmp_path, services
):
    from fake_immich import LIBRARY_PREFIX, FakeImmich, lfw_asset

    assets, originals = [], {}
    for person in ("Colin_Powell", "Tony_Blair"):
        for i, photo in enumerate(sorted((lfw_dir / person).glob("*.jpg"))[:5]):
            changes: dict[str, object] = {"index": len(assets)}
            if i < 2:
                fmt = ("HEIF", "AVIF")[i]
                name = f"IMG_{len(assets):04d}" + (".HEIC" if fmt == "HEIF" else ".avif")
                changes.update(
                    data=encode_as(photo, fmt, rotated=True, capture_time=CAPTURED),
                    mime="image/heic" if fmt == "HEIF" else "image/avif",
                    original_path=f"{LIBRARY_PREFIX}/{person}/{name}",
                    report_size=False,  # the stager reads the size from the file's header
                )
            asset = lfw_asset(photo, **changes)  # type: ignore[arg-type]
            assets.append(asset)
            originals[asset.id] = asset
    staging = tmp_path / "staging"
    common = ["--user", "alice", "--staging-root", str(staging)]
    env = {**os.environ, "IMMICH_API_KEY": IMMICH_KEY}
    with FakeImmich(assets, IMMICH_KEY) as fake:
        staged = run_facesets(
            "immich", "stage", *common, "--no-progress", env={**env, "IMMICH_URL": fake.url}
        )
    assert staged.returncode == 0, staged.stderr
    state = json.loads((staging / "alice" / "state.json").read_text())["assets"]
    phone = [a for a in assets if a.mime != "image/jpeg"]
    assert len(phone) == 4
    for asset in phone:
        record = state[asset.id]
        assert record["status"] == "staged" and record["size_source"] == "decoded"
        path = staging / "alice" / record["path"]
        assert path.suffix in (".HEIC", ".avif")
        assert path.read_bytes() == asset.data  # the original, not a conversion

    imported = run_facesets(
        "immich",
        "import",
        *common,
        "--min-faces",
        "3",
        "--json",
        *services,
        env={**env, "IMMICH_URL": "http://127.0.0.1:9"},
    )
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert result["embed"]["embedded"] == len(assets)
    assert result["embed"]["errors"] == {}
    assert result["route"]["new_facesets"] == 2
    with sqlite3.connect(staging / "alice" / "faces.db") as db:
        rows = db.execute(
            "SELECT i.path, i.capture_time, COUNT(f.face_id) FROM images i "
            "JOIN faces f ON f.sha256 = i.sha256 GROUP BY i.sha256"
        ).fetchall()
    faces = {Path(path).name: (captured, count) for path, captured, count in rows}
    for asset in phone:
        captured, count = faces[asset.file_name]
        assert captured == "2021-05-02T09:41:00" and count >= 1
