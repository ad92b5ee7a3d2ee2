"""dedup-optimize on an export built here from LFW faces, with real CountFaces and Embed on the
mini pack: planted byte copies, near-duplicates and two-face PNGs are each found and moved,
nothing else moves, a re-run changes nothing, restore puts every byte back."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import lfw_people
from maintenance_export import assert_fsz_match_folders, build_export, snapshot
from PIL import Image

from facesets.client import Endpoint, InferenceClient
from facesets.common.server import ServeOptions, start_server
from facesets.common.settings import InferenceSettings, RuntimeSettings
from facesets.contract import layout
from facesets.contract.export import DedupOptimizeParams
from facesets.export.maintenance import runs
from facesets.export.maintenance.dedup import dedup_optimize
from facesets.export.maintenance.inference_calls import InferenceFaces
from facesets.export.maintenance.restore import restore
from facesets.inference import servicer as inference
from services import run_facesets, running_services, service_flags


@pytest.fixture(scope="module")
def faces(model_root):
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
    yield InferenceFaces(client)
    client.close()
    running.stop(0)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _crop(photo: Path) -> Image.Image:
    return Image.open(photo).convert("RGB")  # LFW photos: one central face with a margin


def planted_export(faces: InferenceFaces, lfw_dir: Path, out: Path) -> Path:
    """Three facesets of LFW photos the detector finds one face in, with planted problems: a
    byte copy across facesets (copy_of_0.png), a near-duplicate re-encoded and resized
    (near.png) and a two-face PNG (two_faces.png)."""
    found = lfw_people(lfw_dir, 6, 5, min_photos=5)
    # photos the detector finds exactly one face in, three per person
    people: dict[str, list[Path]] = {}
    for person, photos in found.items():
        counts = faces.count_faces(photos)
        ones = [p for p, c in zip(photos, counts, strict=True) if c == 1]
        if len(ones) >= 3:
            people[person] = ones[:3]
    names = sorted(people)[:4]
    assert len(names) == 4
    sets: dict[int, list[tuple[str, bytes]]] = {}
    for number, person in enumerate(names[:3]):
        sets[number] = [(f"{person}_{i}.png", _png(_crop(p))) for i, p in enumerate(people[person])]
    # a byte copy across facesets: faceset 0's best PNG, planted in faceset 1
    copied_name, copied = sets[0][0]
    sets[1].append(("copy_of_0.png", copied))
    # a near-duplicate: faceset 2's best crop, re-encoded as JPEG and resized
    base = _crop(people[names[2]][0])
    buffer = io.BytesIO()
    base.crop((6, 6, 244, 244)).resize((200, 200)).save(buffer, format="JPEG", quality=90)
    sets[2].append(("near.png", _png(Image.open(buffer).convert("RGB").resize((240, 240)))))
    # a two-face PNG: two people side by side
    pair = Image.new("RGB", (500, 250))
    pair.paste(_crop(people[names[0]][1]), (0, 0))
    pair.paste(_crop(people[names[3]][0]), (250, 0))
    sets[1].append(("two_faces.png", _png(pair)))
    return build_export(out, sets)


PLANTED = {
    ("copy_of_0.png", "byte_copy"),
    ("two_faces.png", "face_count"),
    ("near.png", "near_duplicate"),
}


def test_dedup_optimize_finds_each_planted_problem_and_restores(faces, lfw_dir, tmp_path):
    export = planted_export(faces, lfw_dir, tmp_path / "export")
    best = layout.read_json(export / "faceset_000" / layout.FACESET_MANIFEST)["crops"][0]
    copied_name = Path(best["file"]).name  # its byte copy is planted in faceset_001
    before = snapshot(export)

    run = dedup_optimize(export, DedupOptimizeParams(), faces.count_faces, faces.embed)
    moved = {(Path(m.src).name, m.reason) for m in run.moves}
    assert moved == PLANTED, [m.as_dict() for m in run.moves]
    after = snapshot(export)
    for rel, data in before.items():
        if rel.endswith(".png") and Path(rel).name not in {m[0] for m in moved}:
            assert after[rel] == data, rel  # nothing else moved
    assert (export / "faceset_000" / layout.CROPS_DIR / copied_name).exists()  # one copy stays
    assert assert_fsz_match_folders(export) == 6
    manifest = runs.read_manifest(export)
    assert manifest["dedup_runs"][-1]["counts"] == {"byte_copies": 1, "near": 1}
    assert manifest["multiface_runs"][-1]["counts"] == {"face_count": 1}

    again = dedup_optimize(export, DedupOptimizeParams(), faces.count_faces, faces.embed)
    assert again.moves == [] and snapshot(export) == after

    restored = restore(export, run_id=run.id)
    assert restored.conflicts == [] and len(restored.restored) == 3
    assert snapshot(export) == before
    assert assert_fsz_match_folders(export) == 6


def file_hashes(out: Path) -> dict[str, str]:
    """Every file under OUT (manifests included) by its sha256; the writer's lock aside."""
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != layout.WRITER_LOCK
    }


def test_dedup_optimize_command_end_to_end(faces, lfw_dir, shared_dir, tmp_path):
    """`facesets dedup-optimize` and `facesets restore` through export and inference services
    (their start-up is tested elsewhere): each planted problem moves to faces/_dropped/,
    nothing else moves, a re-run changes no file, restore brings every file back; the .fsz
    match their folders throughout."""
    export = planted_export(faces, lfw_dir, tmp_path / "export")
    before = snapshot(export)
    (tmp_path / "services").mkdir()
    with running_services(tmp_path / "services", [tmp_path, shared_dir]) as started:
        _dedup_optimize_and_restore(export, before, started)


def _dedup_optimize_and_restore(export, before, started):
    flags = service_flags(started, "dedup-optimize")  # the inference service runs the mini pack
    done = run_facesets("dedup-optimize", str(export), *flags, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert {(Path(m["src"]).name, m["reason"]) for m in summary["moves"]} == PLANTED
    for move in summary["moves"]:
        assert move["dst"] == runs.dropped_path(move["src"])
        assert f"/{layout.CROPS_DIR}/{layout.DROPPED_DIR}/" in move["dst"]
        assert (export / move["dst"]).read_bytes() == before[move["src"]]
    after = snapshot(export)
    planted = {name for name, _ in PLANTED}
    pngs_before = {r: d for r, d in before.items() if r.endswith(".png")}
    assert {r for r in pngs_before if Path(r).name not in planted} == {
        r for r in after if r.endswith(".png") and f"/{layout.DROPPED_DIR}/" not in r
    }  # nothing else moved
    assert all(after[r] == d for r, d in pngs_before.items() if Path(r).name not in planted)
    assert assert_fsz_match_folders(export) == 6
    hashes = file_hashes(export)

    again = run_facesets("dedup-optimize", str(export), *flags, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["moves"] == []
    assert file_hashes(export) == hashes
    assert assert_fsz_match_folders(export) == 6

    # A PNG named in Latin-1 among the crops (a second user of a shared export; facesets never
    # names a file so) is no file of the export's: left where it is, and the run goes on (it
    # used to end with an encoding error at the first manifest naming it).
    crops = sorted(layout.faces_dir(export / "faceset_000").glob("*.png"))
    latin_png = os.fsencode(crops[0].parent) + b"/caf\xe9.png"
    shutil.copy(crops[0], latin_png)
    hashes = file_hashes(export)
    latin = run_facesets("dedup-optimize", str(export), *flags, "--json")
    assert latin.returncode == 0, latin.stderr[-3000:]
    assert json.loads(latin.stdout)["moves"] == []
    assert file_hashes(export) == hashes and Path(os.fsdecode(latin_png)).is_file()
    Path(os.fsdecode(latin_png)).unlink()

    back = run_facesets(
        "restore",
        str(export),
        "--run",
        summary["run"],
        "--json",
        *service_flags(started, "restore"),
    )
    assert back.returncode == 0, back.stderr[-3000:]
    assert len(json.loads(back.stdout)["restored"]) == 3
    assert snapshot(export) == before
    assert assert_fsz_match_folders(export) == 6
