"""Export core on real LFW photos: crops, one-face check, quality ranking, .fsz files, manifests.

Faces come from InsightFace's FaceAnalysis on the mini pack; the one-face check and the
independent re-check use the pack's real SCRFD detector.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import reference_session_options
from PIL import Image

from facesets.common import settings
from facesets.contract import defaults, layout
from facesets.contract.export import ExportSwapParams
from facesets.contract.fields import InvalidParameter
from facesets.export import quality
from facesets.export.crops import (
    REASON_EXTRA_FACES,
    SourceImageError,
    checked_crops,
    crop_square,
    load_image_oriented,
)
from facesets.export.fsz import FszError, member_name, write_fsz
from facesets.export.records import (
    ExportInputError,
    FaceRow,
    FacesetSpec,
    group_faces,
    parse_refine_manifest,
    read_refine_manifest,
)
from facesets.export.swap import ExportError, export_swap
from facesets.inference.sharpness import face_sharpness

PEOPLE = ("George_W_Bush", "Colin_Powell", "Tony_Blair")
PER_PERSON = 8
TOP_N = 5
MIN_SHORT = 80.0  # LFW faces are 90-110 px; the production 100 px gate would halve the slice
PARAMS = ExportSwapParams(top_n=TOP_N, min_face_short=MIN_SHORT)
FEWER = ExportSwapParams(top_n=TOP_N - 2, min_face_short=MIN_SHORT)


# --- helpers (also used by test_report.py) ---------------------------------------------------


def make_analyser(model_root: Path):
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(
        name="facepack-mini",
        root=str(model_root),
        providers=["CPUExecutionProvider"],
        sess_options=reference_session_options(),
    )
    app.prepare(ctx_id=-1, det_size=(640, 640))
    return app


def make_counter(model_root: Path) -> Callable[[list[np.ndarray]], list[int]]:
    """count_faces backed by the pack's SCRFD detector at the input size the inference service
    gives each crop (its own size, up to 640)."""
    import insightface

    from facesets.inference.models import Detector

    det = insightface.model_zoo.get_model(
        str(model_root / "models" / "facepack-mini" / "det_scrfd_2.5g_bnkps.onnx"),
        providers=["CPUExecutionProvider"],
        sess_options=reference_session_options(),
    )
    detector = Detector(det, 640, 0.5)
    return lambda crops: [len(detector.detect(crop)) for crop in crops]


def make_row(face_id: int, path: Path, face, image: np.ndarray) -> FaceRow:
    """A FaceRow as the store would hold it for one detected face."""
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    height, width = image.shape[:2]
    blur = face_sharpness(image, np.array([x1, y1, x2, y2]))
    return FaceRow(
        face_id=face_id,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        path=str(path),
        bbox=(x1, y1, x2, y2),
        kps=np.asarray(face.kps),
        det_score=float(face.det_score),
        embedding=np.asarray(face.normed_embedding),
        face_short=min(x2 - x1, y2 - y1),
        blur=blur,
        image_width=width,
        image_height=height,
    )


def labelled_row(analyser, face_id: int, path: Path) -> FaceRow:
    """The face nearest the image centre: LFW's labelled person."""
    image = load_image_oriented(path)
    faces = analyser.get(image)
    assert faces, f"no face in {path}"
    centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
    face = min(faces, key=lambda f: float(np.linalg.norm((f.bbox[:2] + f.bbox[2:]) / 2 - centre)))
    return make_row(face_id, path, face, image)


def copy_people(
    lfw: Path, dest: Path, people: dict[str, range], folder_names: dict[str, str] | None = None
) -> dict[str, list[Path]]:
    """Copy LFW photos (person → photo numbers) into dest, so tests may damage them."""
    copied: dict[str, list[Path]] = {}
    for person, numbers in people.items():
        folder = dest / (folder_names or {}).get(person, person)
        folder.mkdir(parents=True, exist_ok=True)
        copied[person] = []
        for n in numbers:
            src = lfw / person / f"{person}_{n:04d}.jpg"
            shutil.copyfile(src, folder / src.name)
            copied[person].append(folder / src.name)
    return copied


def read_fsz(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def fsz_digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.fsz"))
    }


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyser(model_root: Path):
    return make_analyser(model_root)


@pytest.fixture(scope="module")
def count_faces(model_root: Path):
    return make_counter(model_root)


@pytest.fixture(scope="module")
def corpus(lfw_dir: Path, analyser, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three people's photos copied to a scratch folder, with their FaceRows, plus extras:
    a re-encoded smaller copy (near duplicate), a tiny copy (small face), another person's
    face to plant as an outlier, and singleton faces for the candidate search."""
    root = tmp_path_factory.mktemp("photos")
    photos = copy_people(lfw_dir, root, {p: range(1, PER_PERSON + 1) for p in PEOPLE})
    extras = copy_people(
        lfw_dir,
        root / "extras",
        {
            "George_W_Bush": range(20, 22),
            "Tony_Blair": range(20, 21),
            "Jennifer_Aniston": range(1, 2),
        },
    )
    bush1 = cv2.imread(str(photos["George_W_Bush"][0]))
    copy_path = root / "copies" / "bush_0001_reencoded.jpg"
    copy_path.parent.mkdir()
    smaller = cv2.resize(bush1, (220, 220), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(copy_path), smaller, [cv2.IMWRITE_JPEG_QUALITY, 70])
    tiny_path = root / "copies" / "bush_0002_tiny.jpg"
    cv2.imwrite(
        str(tiny_path),
        cv2.resize(
            cv2.imread(str(photos["George_W_Bush"][1])), (100, 100), interpolation=cv2.INTER_AREA
        ),
    )

    next_id = iter(range(1, 10_000))
    rows = {p: [labelled_row(analyser, next(next_id), path) for path in photos[p]] for p in PEOPLE}
    return {
        "root": root,
        "photos": photos,
        "rows": rows,
        "duplicate": labelled_row(analyser, 501, copy_path),
        "tiny": labelled_row(analyser, 502, tiny_path),
        "outlier": labelled_row(analyser, 503, extras["Tony_Blair"][0]),
        "singletons": [
            labelled_row(analyser, 600 + i, p)
            for i, p in enumerate([*extras["George_W_Bush"], extras["Jennifer_Aniston"][0]])
        ],
    }


def sets_of(corpus: dict) -> dict[int, list[FaceRow]]:
    rows = corpus["rows"]
    return {
        1: [*rows["George_W_Bush"], corpus["duplicate"], corpus["tiny"], corpus["outlier"]],
        2: list(rows["Colin_Powell"]),
        3: list(rows["Tony_Blair"]),
    }


@pytest.fixture(scope="module")
def exported(corpus: dict, count_faces, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("export")
    events: list[tuple[str, int, int, str]] = []
    summary = export_swap(
        sets_of(corpus),
        out,
        PARAMS,
        load_image=load_image_oriented,
        count_faces=count_faces,
        candidates=corpus["singletons"],
        progress=lambda *event: events.append(event),
    )
    return {"out": out, "summary": summary, "events": events}


def faceset_manifest(out: Path, number: int) -> dict:
    return json.loads(
        (out / layout.FACESET_DIR.format(number) / layout.FACESET_MANIFEST).read_text()
    )


# --- the export on real photos ----------------------------------------------------------------


def test_every_fsz_is_a_flat_zip_of_single_face_pngs(exported: dict, analyser) -> None:
    out = exported["out"]
    fsz_files = sorted(out.rglob("*.fsz"))
    assert len(fsz_files) == 6  # top and all for three facesets
    for fsz in fsz_files:
        members = read_fsz(fsz)
        assert members
        for info, data in members:
            assert not info.is_dir() and "/" not in info.filename and info.filename.endswith(".png")
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert (info.external_attr >> 16) == 0o100644
            image = decode_png(data)
            assert image.shape == (defaults.EXPORT_OUT_SIZE, defaults.EXPORT_OUT_SIZE, 3)
            faces = analyser.get(image)
            assert len(faces) == 1, f"{fsz.name}/{info.filename}: {len(faces)} faces"


def test_crops_show_their_own_person(exported: dict, corpus: dict, analyser) -> None:
    """The face re-detected in each crop is the source face (same identity), not a bystander."""
    out = exported["out"]
    by_id = {row.face_id: row for rows in sets_of(corpus).values() for row in rows}
    for number in (1, 2, 3):
        for crop in faceset_manifest(out, number)["crops"]:
            faces = analyser.get(cv2.imread(str(out / crop["file"])))
            assert len(faces) == 1
            similarity = float(faces[0].normed_embedding @ by_id[crop["face_id"]].embedding)
            assert similarity > 0.6, (crop["file"], similarity)


def test_top_n_follows_the_composite_score(exported: dict) -> None:
    out = exported["out"]
    for number in (1, 2, 3):
        manifest = faceset_manifest(out, number)
        crops = manifest["crops"]
        composites = [c["composite"] for c in crops]
        assert composites == sorted(composites, reverse=True)
        assert [c["rank"] for c in crops] == list(range(1, len(crops) + 1))
        # Members are named by rank and a short hash of the PNG, never after the source.
        names = [member_name(c["rank"], (out / c["file"]).read_bytes()) for c in crops]
        top = [name for name, c in zip(names, crops, strict=True) if c["in_top"]]
        assert len(top) == min(TOP_N, len(crops))
        assert [info.filename for info, _ in read_fsz(out / manifest["fsz_top"])] == top
        assert [info.filename for info, _ in read_fsz(out / manifest["fsz_all"])] == names
        weights = settings.export().quality.weights.as_dict()
        for c in crops:  # the composite is the weighted mean of the components
            assert set(c["scores"]) == set(weights)
            expected = sum(weights[k] * c["scores"][k] for k in weights) / sum(weights.values())
            assert c["composite"] == pytest.approx(expected, abs=1e-5)


def test_manifests_agree_with_files_on_disk(exported: dict) -> None:
    out, summary = exported["out"], exported["summary"]
    top = json.loads((out / layout.EXPORT_MANIFEST).read_text())
    assert sorted(top["facesets"]) == ["faceset_001", "faceset_002", "faceset_003"]
    kept = 0
    for number in (1, 2, 3):
        name = layout.FACESET_DIR.format(number)
        manifest = faceset_manifest(out, number)
        entry = top["facesets"][name]
        assert entry["counts"] == manifest["counts"]
        assert manifest["counts"]["kept"] == len(manifest["crops"])
        assert manifest["counts"]["faces"] == len(manifest["crops"]) + len(manifest["dropped"])
        on_disk = {p.relative_to(out).as_posix() for p in (out / name / layout.CROPS_DIR).iterdir()}
        assert on_disk == {c["file"] for c in manifest["crops"]}
        for rel in manifest["files"]:
            assert (out / rel).is_file(), rel
        members = dict((info.filename, data) for info, data in read_fsz(out / manifest["fsz_all"]))
        for crop in manifest["crops"]:
            data = (out / crop["file"]).read_bytes()
            assert members[member_name(crop["rank"], data)] == data
            assert Path(crop["file"]).name.endswith(f"_f{crop['face_id']}.png")
        for item in manifest["dropped"]:
            if "thumbnail" in item:
                assert (out / item["thumbnail"]).is_file()
        kept += len(manifest["crops"])
    assert summary["kept"] == kept and summary["facesets"] == 3
    assert summary["fsz"] == [
        str(out / top["facesets"][n][k])
        for n in sorted(top["facesets"])
        for k in ("fsz_top", "fsz_all")
    ]
    assert exported["events"] and exported["events"][-1][0] in {"facesets", "candidates"}


def test_gates_reject_outlier_small_face_and_duplicate(exported: dict, corpus: dict) -> None:
    dropped = {d["face_id"]: d for d in faceset_manifest(exported["out"], 1)["dropped"]}
    assert dropped[corpus["outlier"].face_id]["reason"] == "outlier"
    assert dropped[corpus["tiny"].face_id]["reason"] == "small"
    # The re-encoded copy and its original: exactly one kept, the other names it.
    original = corpus["rows"]["George_W_Bush"][0]
    pair = {original.face_id, corpus["duplicate"].face_id}
    duplicates = [d for d in dropped.values() if d["reason"] == "duplicate"]
    assert len(duplicates) == 1 and duplicates[0]["face_id"] in pair
    (other,) = pair - {duplicates[0]["face_id"]}
    assert f"copy of face {other} " in duplicates[0]["detail"]
    kept_ids = {c["face_id"] for c in faceset_manifest(exported["out"], 1)["crops"]}
    assert other == original.face_id and other in kept_ids  # the full-resolution photo wins
    # Distinct photos of one person are never collapsed.
    for number in (2, 3):
        assert "duplicate" not in faceset_manifest(exported["out"], number)["counts"]["dropped"]
    assert exported["summary"]["dropped"]["outlier"] == 1


def test_candidates_near_a_faceset_are_offered_for_review(exported: dict, corpus: dict) -> None:
    out = exported["out"]
    section = json.loads((out / layout.EXPORT_MANIFEST).read_text())["candidates"]
    bush_ids = {row.face_id for row in corpus["singletons"][:2]}
    stranger = corpus["singletons"][2].face_id
    offered = {item["face_id"]: item for item in section["items"]}
    assert stranger not in offered
    assert bush_ids & set(offered), "no extra photo of Bush offered as a candidate"
    for face_id, item in offered.items():
        assert face_id in bush_ids
        assert item["nearest"] == "faceset_001"
        assert item["distance"] <= defaults.CANDIDATE_MATCH_THRESHOLD
        assert item["composite"] >= defaults.CANDIDATE_MIN_SCORE
        path = out / item["file"]
        assert path.parent.name == layout.CANDIDATES_DIR and path.name.startswith("faceset_001__")
        assert path.is_file()
    assert exported["summary"]["candidates"] == len(offered)


def test_rerun_is_byte_identical_and_leaves_foreign_files(
    corpus: dict, count_faces, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    other = {"number": 99, "dir": "faceset_099", "counts": {"kept": 7}}
    (out / layout.EXPORT_MANIFEST).write_text(json.dumps({"facesets": {"faceset_099": other}}))
    sets = {2: corpus["rows"]["Colin_Powell"], 3: corpus["rows"]["Tony_Blair"]}
    kwargs = {
        "load_image": load_image_oriented,
        "count_faces": count_faces,
        "parameters": PARAMS,
    }
    export_swap(sets, out, **kwargs)
    first = fsz_digests(out)
    crops_first = {
        p.name: p.read_bytes() for p in (out / "faceset_002" / layout.CROPS_DIR).iterdir()
    }
    foreign = {
        out / "notes.txt": b"mine",
        out / "faceset_002" / "keep.txt": b"also mine",
        out / "faceset_002" / layout.CROPS_DIR / "hand_picked.png": b"\x89PNG not really",
    }
    for path, data in foreign.items():
        path.write_bytes(data)

    export_swap(sets, out, **kwargs)
    assert fsz_digests(out) == first and len(first) == 4
    for path, data in foreign.items():
        assert path.read_bytes() == data
    crops_again = {
        p.name: p.read_bytes() for p in (out / "faceset_002" / layout.CROPS_DIR).iterdir()
    }
    assert crops_again == crops_first | {
        "hand_picked.png": foreign[out / "faceset_002" / layout.CROPS_DIR / "hand_picked.png"]
    }
    top = json.loads((out / layout.EXPORT_MANIFEST).read_text())
    assert top["facesets"]["faceset_099"] == other
    assert set(top["facesets"]) == {"faceset_002", "faceset_003", "faceset_099"}

    # Re-run with one faceset only: the other faceset's entry and files stay.
    export_swap({3: corpus["rows"]["Tony_Blair"]}, out, **kwargs)
    top = json.loads((out / layout.EXPORT_MANIFEST).read_text())
    assert set(top["facesets"]) == {"faceset_002", "faceset_003", "faceset_099"}
    assert fsz_digests(out) == first


def test_a_full_disk_mid_export_leaves_no_torn_files_and_a_rerun_completes(
    corpus: dict, count_faces, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = {"load_image": load_image_oriented, "count_faces": count_faces}
    rows = corpus["rows"]
    before = {2: rows["Colin_Powell"], 3: rows["Tony_Blair"]}
    after = {1: rows["George_W_Bush"], 2: rows["Colin_Powell"], 3: rows["Tony_Blair"]}
    out = tmp_path / "out"
    export_swap(before, out, PARAMS, **kwargs)

    # The disk fills up part-way through a re-export with other settings: every write that
    # reaches the disk after the first few fails as it would on a full file system.
    real_fsync, synced = os.fsync, []

    def full_disk(fd: int) -> None:
        synced.append(fd)
        if len(synced) > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_swap(after, out, FEWER, **kwargs)
    monkeypatch.undo()
    assert len(synced) == 7
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no torn files
    top = json.loads((out / layout.EXPORT_MANIFEST).read_text())
    assert set(top["facesets"]) == {"faceset_002", "faceset_003"}  # still the last full run's

    export_swap(after, out, FEWER, **kwargs)
    clean = tmp_path / "clean"
    export_swap(after, clean, FEWER, **kwargs)

    def files(folder: Path) -> set[str]:
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

    assert files(out) == files(clean)  # nothing left over from the failed run
    assert fsz_digests(out) == fsz_digests(clean)


def test_deleted_or_corrupt_source_is_skipped_and_reported(
    corpus: dict, count_faces, tmp_path: Path
) -> None:
    # Work on copies: the rows are re-pointed at a scratch folder that the test may damage.
    scratch = tmp_path / "photos"
    scratch.mkdir()
    rows = []
    for row in corpus["rows"]["Colin_Powell"]:
        dest = scratch / Path(row.path).name
        shutil.copyfile(row.path, dest)
        rows.append(dataclasses.replace(row, path=str(dest)))
    # One photo also lives at a second path (same bytes): losing the first path costs nothing.
    alias = scratch / "backup_copy.jpg"
    shutil.copyfile(rows[-1].path, alias)
    rows[-1] = dataclasses.replace(rows[-1], aliases=[str(alias)])
    out = tmp_path / "out"
    kwargs = {
        "load_image": load_image_oriented,
        "count_faces": count_faces,
        "parameters": PARAMS,
    }
    export_swap({2: rows}, out, **kwargs)
    before = {c["face_id"]: c["file"] for c in faceset_manifest(out, 2)["crops"]}
    assert rows[-1].face_id in before
    gone, broken, replaced = [r for r in rows[:-1] if r.face_id in before][:3]
    Path(gone.path).unlink()
    Path(broken.path).write_bytes(Path(broken.path).read_bytes()[:300])  # truncated JPEG
    other = cv2.imread(str(corpus["rows"]["Tony_Blair"][0].path))
    cv2.imwrite(replaced.path, cv2.resize(other, (300, 300)))  # a different photo, same name
    Path(rows[-1].path).unlink()
    foreign = out / "faceset_002" / layout.CROPS_DIR / "not_exports.png"
    foreign.write_bytes(b"x")

    summary = export_swap({2: rows}, out, **kwargs)
    skipped = {item["face_id"]: item for item in summary["skipped_sources"]}
    assert set(skipped) == {gone.face_id, broken.face_id, replaced.face_id}
    assert skipped[gone.face_id]["source"] == gone.path
    assert "not found" in skipped[gone.face_id]["error"]
    # Cut short or replaced, a photo is no longer the one embedded: refused before decoding.
    assert "changed since it was embedded" in skipped[broken.face_id]["error"]
    assert "changed since it was embedded" in skipped[replaced.face_id]["error"]
    manifest = faceset_manifest(out, 2)
    reasons = {d["face_id"]: d["reason"] for d in manifest["dropped"]}
    assert {reasons[r.face_id] for r in (gone, broken, replaced)} == {"unreadable"}
    assert manifest["counts"]["dropped"]["unreadable"] == 3
    # The photo read through its alias is exported as before, under the same name.
    kept = {c["face_id"]: c["file"] for c in manifest["crops"]}
    assert kept[rows[-1].face_id] == before[rows[-1].face_id]
    # The lost photos' old crops were export's own files: removed. The foreign file stays.
    for row in (gone, broken, replaced):
        assert not (out / before[row.face_id]).exists()
    assert foreign.read_bytes() == b"x"
    names = [info.filename for info, _ in read_fsz(out / manifest["fsz_all"])]
    assert len(names) == len(before) - 3
    entry = json.loads((out / layout.EXPORT_MANIFEST).read_text())["facesets"]["faceset_002"]
    assert {s["face_id"] for s in entry["skipped"]} == set(skipped)


def two_face_canvas(
    lfw: Path, analyser, main: str, bystander: str, scale: float, margin: float
) -> np.ndarray:
    """A grey canvas with `main`'s face and, right beside it, `bystander`'s face."""

    def tile(path: Path, scale: float) -> np.ndarray:
        image = cv2.imread(str(path))
        face = min(
            analyser.get(image),
            key=lambda f: float(np.linalg.norm((f.bbox[:2] + f.bbox[2:]) / 2 - 125)),
        )
        x1, y1, x2, y2 = face.bbox
        w = x2 - x1
        part = image[
            int(max(0, y1 - 0.3 * w)) : int(min(250, y2 + 0.3 * w)),
            int(max(0, x1 - margin * w)) : int(min(250, x2 + margin * w)),
        ]
        return cv2.resize(part, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    a, b = tile(lfw / main, 1.0), tile(lfw / bystander, scale)
    canvas = np.full((a.shape[0] + 240, a.shape[1] + b.shape[1] + 240, 3), 90, np.uint8)
    canvas[120 : 120 + a.shape[0], 120 : 120 + a.shape[1]] = a
    y = 120 + (a.shape[0] - b.shape[0]) // 2
    canvas[y : y + b.shape[0], 120 + a.shape[1] : 120 + a.shape[1] + b.shape[1]] = b
    return canvas


def test_crop_with_a_bystander_is_recut_tighter_or_dropped(
    lfw_dir: Path, analyser, count_faces, corpus: dict, tmp_path: Path
) -> None:
    canvases = {
        # A full-size neighbour: the default padding shows part of him.
        701: two_face_canvas(
            lfw_dir,
            analyser,
            "Colin_Powell/Colin_Powell_0020.jpg",
            "Tony_Blair/Tony_Blair_0021.jpg",
            1.0,
            0.1,
        ),
        # A smaller neighbour tight against the face: still there at the tighter padding.
        702: two_face_canvas(
            lfw_dir,
            analyser,
            "Colin_Powell/Colin_Powell_0021.jpg",
            "Tony_Blair/Tony_Blair_0022.jpg",
            0.6,
            0.05,
        ),
    }
    rows = []
    for face_id, canvas in canvases.items():
        path = tmp_path / f"canvas_{face_id}.png"
        cv2.imwrite(str(path), canvas)
        faces = sorted(analyser.get(canvas), key=lambda f: float(f.bbox[0]))
        assert len(faces) == 2, "the canvas must show two detectable faces"
        row = make_row(face_id, path, faces[0], canvas)
        # Precondition: at the default padding the crop does hold the bystander.
        assert count_faces([crop_square(canvas, row.bbox, defaults.EXPORT_PAD_RATIO, 512)]) == [2]
        rows.append(row)

    out = tmp_path / "out"
    summary = export_swap(
        {2: [*corpus["rows"]["Colin_Powell"], *rows]},
        out,
        PARAMS,
        load_image=load_image_oriented,
        count_faces=count_faces,
    )
    manifest = faceset_manifest(out, 2)
    kept = {c["face_id"]: c for c in manifest["crops"]}
    dropped = {d["face_id"]: d for d in manifest["dropped"]}
    recut = 0
    for face_id in canvases:
        if face_id in kept:
            crop = kept[face_id]
            assert crop["recropped"] and crop["pad_ratio"] < defaults.EXPORT_PAD_RATIO
            assert crop["attempts"][0] == [defaults.EXPORT_PAD_RATIO, 2]
            assert count_faces([cv2.imread(str(out / crop["file"]))]) == [1]
            recut += 1
        else:
            assert dropped[face_id]["reason"] == REASON_EXTRA_FACES
            assert dropped[face_id]["attempts"][0] == [defaults.EXPORT_PAD_RATIO, 2]
            assert (out / dropped[face_id]["thumbnail"]).is_file()
    assert manifest["counts"]["recropped"] == recut
    assert manifest["counts"]["dropped"].get(REASON_EXTRA_FACES, 0) == 2 - recut
    assert summary["recropped"] == recut
    assert 701 in kept, "a neighbour at the edge of the padding should be cut away"


# --- the parts on their own -------------------------------------------------------------------


def test_checked_crops_drops_when_no_padding_gives_one_face() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    counts = iter([[3, 1], [2], [0]])  # pad 0.5 → 0.25 → 0.1
    results = checked_crops(
        [(image, (50, 50, 150, 150)), (image, (60, 60, 140, 140))],
        lambda crops: next(counts),
        pad_ratio=0.5,
        out_size=64,
    )
    assert results[0].image is None and results[0].reason == REASON_EXTRA_FACES
    assert results[0].attempts == [(0.5, 3), (0.25, 2), (0.1, 0)]
    assert results[1].image is not None and results[1].pad_ratio == 0.5 and not results[1].recropped
    with pytest.raises(RuntimeError, match="counts"):
        checked_crops([(image, (50, 50, 150, 150))], lambda crops: [], pad_ratio=0.5, out_size=64)


def test_crop_pads_outside_the_photo_with_black() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_square(image, (0, 0, 50, 50), 0.5, 100)  # square spans -25..75
    assert crop.shape == (100, 100, 3)
    assert crop[:20, :20].max() == 0 and crop[60:90, 60:90].min() == 200


def test_fsz_is_deterministic_and_flat(tmp_path: Path) -> None:
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    members = [("b.png", png), ("a.png", png + b"")]
    write_fsz(tmp_path / "one.fsz", members)
    write_fsz(tmp_path / "two.fsz", members)
    assert (tmp_path / "one.fsz").read_bytes() == (tmp_path / "two.fsz").read_bytes()
    assert zipfile.ZipFile(tmp_path / "one.fsz").namelist() == ["b.png", "a.png"]
    for bad in (
        [("dir/a.png", png)],
        [("a.jpg", png)],
        [("a.png", b"not png")],
        [("a.png", png), ("a.png", png)],
        [],
    ):
        with pytest.raises(FszError):
            write_fsz(tmp_path / "bad.fsz", bad)
    assert not (tmp_path / "bad.fsz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_quality_components_rank_as_they_should() -> None:
    frontal = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])
    turned = frontal.copy()
    turned[2, 0] += 14  # nose towards one eye: a head turned sideways
    turned[[0, 3], 0] += 8  # the far side foreshortened
    assert quality.frontality_score(None, None, frontal) > 0.9
    assert (
        quality.frontality_score(None, None, turned)
        < quality.frontality_score(None, None, frontal) - 0.3
    )
    assert quality.frontality_score(0.0, 0.0) == 1.0
    assert (
        quality.frontality_score(60.0, 0.0) == 0.0
        and quality.frontality_score(30.0, 10.0) < 0.5 + 1e-9
    )
    assert quality.symmetry_score(frontal) > 0.9 > quality.symmetry_score(turned)
    # 106 landmarks: a cloud mirrored about the nose axis is symmetric; a skewed one is not.
    rng = np.random.default_rng(0)
    half = rng.uniform([-40, -20], [-2, 60], size=(53, 2))
    nose_x = 56.0
    cloud = np.vstack(
        [
            half + [nose_x, 60],
            np.column_stack([2 * nose_x - (half[:, 0] + nose_x), half[:, 1] + 60]),
        ]
    )
    assert quality.symmetry_score(frontal, cloud) == pytest.approx(1.0, abs=0.05)
    skewed = cloud.copy()
    skewed[:53, 0] -= 25
    assert quality.symmetry_score(frontal, skewed) < 0.5
    assert (
        quality.size_score(64)
        < quality.size_score(128)
        < quality.size_score(256)
        == quality.size_score(2000)
        == 1.0
    )
    assert (
        quality.sharpness_score(settings.export().quality.blur_low / 2) == 0.0
        and quality.sharpness_score(settings.export().quality.blur_high * 10) == 1.0
    )
    # Log scale: the geometric mean of the ends is midway.
    midway = (settings.export().quality.blur_low * settings.export().quality.blur_high) ** 0.5
    assert quality.sharpness_score(midway) == pytest.approx(0.5)
    assert quality.composite(dict.fromkeys(quality.COMPONENTS, 1.0)) == pytest.approx(1.0)


def test_refine_manifest_reading_is_tolerant_with_clear_errors(tmp_path: Path) -> None:
    specs = parse_refine_manifest(
        {
            "facesets": [
                {"name": "faceset_002", "face_ids": [4, 5]},
                {"name": "x", "number": 1, "faces": [{"face_id": 7}]},
            ]
        }
    )
    assert specs == [FacesetSpec(1, (7,), "x"), FacesetSpec(2, (4, 5), "faceset_002")]
    assert parse_refine_manifest({"facesets": {"faceset_003": {"members": [1]}}})[0].number == 3
    for bad in (
        {},
        {"facesets": [{"name": "nameless", "face_ids": [1]}]},
        {"facesets": [{"number": 1}]},
        {"facesets": [{"number": 1, "face_ids": ["a"]}]},
    ):
        with pytest.raises(ExportInputError):
            parse_refine_manifest(bad)
    with pytest.raises(ExportInputError, match="not found"):
        read_refine_manifest(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ExportInputError, match="unreadable"):
        read_refine_manifest(tmp_path / "broken.json")
    row = FaceRow(
        1, "s", "/p.jpg", (0, 0, 10, 10), np.zeros((5, 2)), 0.9, np.ones(4), 10, 50, 20, 20
    )
    grouped, missing = group_faces([FacesetSpec(1, (1, 2))], {1: row})
    assert grouped == {1: [row]} and missing == {1: [2]}
    assert np.linalg.norm(row.embedding) == pytest.approx(1.0)


def test_load_image_applies_exif_orientation_and_reports_bad_files(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes())
    assert load_image_oriented(path).shape == (40, 20, 3)
    with pytest.raises(SourceImageError, match="not found"):
        load_image_oriented(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(SourceImageError, match="not an image"):
        load_image_oriented(tmp_path / "text.jpg")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:200])
    with pytest.raises(SourceImageError):
        load_image_oriented(tmp_path / "cut.jpg")


def test_bad_parameters_and_unreadable_manifest_are_refused(tmp_path: Path) -> None:
    def never(_: list[np.ndarray]) -> list[int]:
        raise AssertionError("nothing should be counted")

    with pytest.raises(InvalidParameter, match="top_n"):
        export_swap(
            {},
            tmp_path,
            ExportSwapParams(top_n=0),
            load_image=load_image_oriented,
            count_faces=never,
        )
    (tmp_path / layout.EXPORT_MANIFEST).write_text("{ not json")
    with pytest.raises(ExportError, match="not overwriting"):
        export_swap({}, tmp_path, load_image=load_image_oriented, count_faces=never)
    assert (tmp_path / layout.EXPORT_MANIFEST).read_text() == "{ not json"
