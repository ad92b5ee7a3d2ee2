"""The clustering jobs on real LFW photos embedded by the mini pack into real SQLite stores."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from store_fixtures import (
    add_photos,
    copy_photos,
    embed_photos,
    lfw_slice,
    new_store,
    sha256_of,
    variants,
)

from facesets.clustering.jobs import consolidate as consolidate_job
from facesets.clustering.jobs import materialize
from facesets.clustering.jobs.cluster import cluster
from facesets.clustering.jobs.consolidate import consolidate
from facesets.clustering.jobs.dedup import dedup
from facesets.clustering.jobs.extend import extend
from facesets.clustering.jobs.job import JobError, centroid_of, vector_json
from facesets.clustering.jobs.materialize import output_name
from facesets.clustering.jobs.refine import refine
from facesets.clustering.store import FaceStore
from facesets.contract import defaults, layout
from facesets.contract.clustering import ClusterParams, ConsolidateParams, DedupParams, RefineParams
from facesets.contract.fields import InvalidParameter

PEOPLE = [
    "George_W_Bush",
    "Colin_Powell",
    "Tony_Blair",
    "Donald_Rumsfeld",
    "Gerhard_Schroeder",
    "Ariel_Sharon",
    "Hugo_Chavez",
    "Junichiro_Koizumi",
]
PER_PERSON = 10
NEWCOMERS = ["Vladimir_Putin", "Jean_Chretien"]  # appear only once extend runs


@dataclass
class World:
    """One test's copies of the photos and a store holding the main slice."""

    src: Path
    store: FaceStore
    photos: dict[str, list[Path]]  # person -> photo copies in the store
    extra: dict[str, list[Path]]  # person -> copies not yet in the store
    shows: dict[str, str] = field(default_factory=dict)  # output file name -> person

    def __post_init__(self) -> None:
        for person, paths in (*self.photos.items(), *self.extra.items()):
            for path in paths:
                self.claim(path, person)

    def claim(self, path: Path, person: str) -> None:
        self.shows[layout.flattened_name(path)] = person

    def person_of(self, name: str) -> str:
        """The person whose photo an output file (flattened source path) shows."""
        return self.shows[name]


@pytest.fixture(scope="session")
def originals(lfw_dir: Path, model_root: Path) -> dict[str, dict[str, list[Path]]]:
    """The LFW slices, embedded once per session (store_fixtures caches the results)."""
    main = lfw_slice(lfw_dir, PEOPLE, PER_PERSON)
    extra = {
        **lfw_slice(lfw_dir, ["Tony_Blair"], 3, skip=PER_PERSON),
        **lfw_slice(lfw_dir, NEWCOMERS, 3),
    }
    embed_photos([p for ps in (*main.values(), *extra.values()) for p in ps], model_root)
    return {"main": main, "extra": extra}


@pytest.fixture
def world(tmp_path: Path, originals: dict[str, dict[str, list[Path]]], model_root: Path) -> World:
    src = tmp_path / "src"
    photos = copy_photos(originals["main"], src)
    extra = copy_photos(originals["extra"], src / "later")
    store = new_store(tmp_path / "faces.db")
    add_photos(store, [p for ps in photos.values() for p in ps], model_root)
    yield World(src, store, photos, extra)
    store.close()


def snapshot(root: Path) -> dict[str, tuple[str, int, bool]]:
    """Every file under root: content digest, mtime and whether it is a symlink."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
            found[str(path.relative_to(root))] = (digest, info.st_mtime_ns, path.is_symlink())
    return found


def folders(out: Path, prefix: str) -> dict[str, set[str]]:
    return {
        d.name: {f.name for f in d.iterdir()}
        for d in sorted(out.iterdir())
        if d.is_dir() and d.name.startswith(prefix)
    }


def manifest(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def folder_of_person(world: World, groups: dict[str, set[str]], person: str) -> str:
    """The one folder holding every photo of person (fails if they are spread out)."""
    names = {layout.flattened_name(p) for p in world.photos[person]}
    holding = [folder for folder, files in groups.items() if names <= files]
    assert len(holding) == 1, f"{person} is not in exactly one folder: {holding}"
    return holding[0]


def check_pure(world: World, groups: dict[str, set[str]]) -> None:
    for folder, files in groups.items():
        people = {world.person_of(name) for name in files}
        assert len(people) == 1, f"{folder} mixes {people}"


# --- cluster -----------------------------------------------------------------------------------


def test_cluster_puts_each_person_in_one_folder_with_every_alias(
    world: World, tmp_path: Path, model_root: Path
) -> None:
    powell = world.photos["Colin_Powell"][0]
    alias = world.src / "copies" / "powell_again.jpg"
    alias.parent.mkdir()
    shutil.copyfile(powell, alias)
    _, known, aliases_added = world.store.register_files(
        [(str(alias), sha256_of(alias), alias.stat().st_size)]
    )
    assert (known, aliases_added) == (1, 1)
    world.claim(alias, "Colin_Powell")
    # A real photo without a face: the top-left corner of an LFW photo.
    corner = world.src / "copies" / "corner.png"
    with Image.open(world.photos["Tony_Blair"][0]) as img:
        img.crop((0, 0, 60, 60)).save(corner)
    add_photos(world.store, [corner], model_root)

    out = tmp_path / "raw"
    events: list[tuple[str, int, int]] = []
    outcome = cluster(world.store, out, progress=lambda *event: events.append(event))
    stages = [stage for stage, _, _ in events]
    assert {"load", "cluster", "materialise"} <= set(stages)
    assert all(0 <= done <= total for _, done, total in events)
    assert events[-1] == (
        "materialise",
        outcome.summary["files_placed"],
        outcome.summary["files_placed"],
    )

    groups = folders(out, "person_")
    assert len(groups) == len(PEOPLE)
    check_pure(world, groups)
    homes = {person: folder_of_person(world, groups, person) for person in PEOPLE}
    assert len(set(homes.values())) == len(PEOPLE)
    # The largest cluster is numbered first, ties by smallest face id: the store's order.
    assert homes["George_W_Bush"] == "person_001"
    assert layout.flattened_name(alias) in groups[homes["Colin_Powell"]]
    assert (out / homes["Colin_Powell"] / layout.flattened_name(alias)).samefile(alias)
    assert (out / homes["Colin_Powell"] / layout.flattened_name(powell)).samefile(powell)
    assert {f.name for f in (out / layout.NOFACE_DIR).iterdir()} == {layout.flattened_name(corner)}

    data = manifest(out / layout.CLUSTER_MANIFEST)
    assert outcome.manifest_path == out / layout.CLUSTER_MANIFEST
    assert data["model"] == {"model_pack": "facepack-mini", "embedding_dim": 128}
    assert data["store"] == str(world.store.path.resolve())
    assert data["parameters"]["threshold"] == defaults.CLUSTER_THRESHOLD
    assert set(data["components"]["methods"]) <= {
        "dense",
        "sparse-exact",
        "sparse-chain",
        "singleton",
    }
    assert sum(c["size"] for c in data["components"]["multi_face"]) >= len(PEOPLE) * PER_PERSON
    placed = {f["face_id"]: f["folder"] for f in data["faces"]}
    assert len(placed) == outcome.summary["faces_clustered"]
    for person in data["persons"]:
        assert all(placed[f] == person["name"] for f in person["face_ids"])
    singles = {f.name for f in (out / layout.SINGLETONS_DIR).iterdir()}
    assert len(data["singletons"]["face_ids"]) == outcome.summary["singletons"]
    assert len(singles) == len(data["singletons"]["photos"])


def test_cluster_rerun_changes_nothing_and_never_touches_foreign_files(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "raw"
    blair = world.photos["Tony_Blair"][1]
    # A foreign file sitting exactly where an output will go, and foreign files beside outputs.
    squatter = out / "person_003" / layout.flattened_name(blair)
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"mine")
    cluster(world.store, out)
    first = snapshot(out)
    assert squatter.read_bytes() == b"mine"

    notes = out / "person_001" / "notes.txt"
    notes.write_text("keep me")
    own_dir = out / "holiday" / "a.jpg"
    own_dir.parent.mkdir()
    own_dir.write_bytes(b"x")
    outcome = cluster(world.store, out)
    again = snapshot(out)
    assert {
        k: v for k, v in again.items() if k not in ("person_001/notes.txt", "holiday/a.jpg")
    } == first
    assert outcome.summary["files_placed"] == 0 and outcome.summary["files_removed"] == 0
    assert outcome.summary["foreign_conflicts"] == [f"person_003/{squatter.name}"]

    # A stricter threshold reshapes the folders: files of the earlier run go, foreign ones stay.
    cluster(world.store, out, ClusterParams(threshold=0.2))
    assert notes.read_text() == "keep me" and own_dir.read_bytes() == b"x"
    assert squatter.read_bytes() == b"mine"
    data = manifest(out / layout.CLUSTER_MANIFEST)
    on_disk = {k for k in snapshot(out) if not k.startswith(layout.CLUSTER_MANIFEST)}
    assert on_disk - set(data["written"]) == {
        "person_001/notes.txt",
        "holiday/a.jpg",
        f"person_003/{squatter.name}",
    }
    assert "pending" not in data


def test_link_modes(world: World, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    cluster(world.store, out, ClusterParams(link_mode="symlink"))
    bush = world.photos["George_W_Bush"][0]
    placed = out / "person_001" / layout.flattened_name(bush)
    assert placed.is_symlink() and os.readlink(placed) == str(bush.resolve())

    cluster(world.store, out, ClusterParams(link_mode="copy"))
    assert not placed.is_symlink() and not placed.samefile(bush)
    assert placed.read_bytes() == bush.read_bytes()

    cluster(world.store, out, ClusterParams(link_mode="hardlink"))
    assert placed.samefile(bush)

    with pytest.raises(InvalidParameter, match="link mode"):
        cluster(world.store, out, ClusterParams(link_mode="teleport"))
    assert placed.samefile(bush)

    # extend places files the way the output was made unless told otherwise.
    cluster(world.store, out, ClusterParams(link_mode="symlink"))
    extend(world.store, out)
    assert placed.is_symlink()


def test_a_photo_deep_in_folders_gets_a_short_stable_name(world: World, tmp_path: Path) -> None:
    deep = world.src.joinpath(*[f"level_{i:02d}_of_a_long_archive_path" for i in range(8)])
    deep.mkdir(parents=True)
    alias = deep / "Colin_Powell_0001.jpg"
    shutil.copyfile(world.photos["Colin_Powell"][0], alias)
    world.store.register_files([(str(alias), sha256_of(alias), alias.stat().st_size)])
    assert len(layout.flattened_name(alias)) > 255

    out = tmp_path / "raw"
    cluster(world.store, out)
    short = output_name(str(alias))
    assert len(short.encode()) <= 255 and short.endswith("Colin_Powell_0001.jpg")
    holding = [d for d, files in folders(out, "person_").items() if short in files]
    assert len(holding) == 1 and (out / holding[0] / short).samefile(alias)
    before = snapshot(out)
    cluster(world.store, out)
    assert snapshot(out) == before


def test_an_output_folder_of_something_else_is_refused(world: World, tmp_path: Path) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / layout.CLUSTER_MANIFEST).write_text('{"facesets": 3}')
    with pytest.raises(JobError, match="another command"):
        cluster(world.store, out)
    assert (out / layout.CLUSTER_MANIFEST).read_text() == '{"facesets": 3}'
    assert sorted(p.name for p in out.iterdir()) == [layout.CLUSTER_MANIFEST]


def test_an_interrupted_run_is_cleaned_up_by_the_next(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "raw"
    cluster(world.store, out)
    clean = {k: v[0] for k, v in snapshot(out).items()}
    real_place = materialize.place
    calls: list[Path] = []

    def failing_place(source: Path, target: Path, mode: str) -> str:
        calls.append(target)
        if len(calls) > 5:
            raise OSError(28, "No space left on device")
        return real_place(source, target, mode)

    monkeypatch.setattr(materialize, "place", failing_place)
    with pytest.raises(OSError, match="No space"):
        cluster(
            world.store, out, ClusterParams(threshold=0.2)
        )  # reshapes folders: many files to place
    monkeypatch.undo()
    assert len(calls) == 6
    assert "pending" in manifest(out / layout.CLUSTER_MANIFEST)

    cluster(world.store, out)
    assert {k: v[0] for k, v in snapshot(out).items()} == clean


def test_missing_source_photo_is_reported_and_skipped(world: World, tmp_path: Path) -> None:
    gone = world.photos["Hugo_Chavez"][2]
    gone_sha = sha256_of(gone)
    gone.unlink()
    out = tmp_path / "raw"
    outcome = cluster(world.store, out)
    assert outcome.summary["missing_photos"] == 1
    data = manifest(out / layout.CLUSTER_MANIFEST)
    assert data["missing_sources"] == {
        "photos": [gone_sha],
        "paths": [str(gone.resolve())],
        "changed_paths": [],
    }
    name = layout.flattened_name(gone)
    assert not any(name in files for files in folders(out, "").values())
    assert all(f["sha256"] != gone_sha for f in data["faces"])
    kept = {layout.flattened_name(p) for p in world.photos["Hugo_Chavez"] if p != gone}
    assert kept in folders(out, "person_").values()


# --- refine ------------------------------------------------------------------------------------


def refine_small(world: World, out: Path) -> dict:
    refine(world.store, out, RefineParams(min_faces=5))
    return manifest(out / layout.REFINE_MANIFEST)


def test_refine_makes_pure_facesets_and_reruns_unchanged(world: World, tmp_path: Path) -> None:
    out = tmp_path / "refined"
    data = refine_small(world, out)
    groups = folders(out, "faceset_")
    assert len(data["facesets"]) == len(PEOPLE) == len(groups)
    check_pure(world, groups)
    assert {world.person_of(next(iter(files))) for files in groups.values()} == set(PEOPLE)

    table = world.store.face_table()
    row = {int(f): i for i, f in enumerate(table.face_id)}
    for number, entry in enumerate(data["facesets"], start=1):
        assert entry["name"] == layout.FACESET_DIR.format(number) and entry["number"] == number
        rows = [row[f] for f in entry["face_ids"]]
        assert len({table.sha256[r] for r in rows}) >= 5
        assert (table.face_short[rows] >= defaults.QUALITY_MIN_SHORT).all()
        assert (table.blur[rows] >= defaults.QUALITY_MIN_BLUR).all()
        assert (table.det_score[rows] >= defaults.QUALITY_MIN_DET_SCORE).all()
        # The centroid is the unit mean of the faces' embeddings, as the store holds them.
        with sqlite3.connect(f"file:{world.store.path}?mode=ro", uri=True) as db:
            blobs = [
                db.execute("SELECT embedding FROM faces WHERE face_id = ?", (int(f),)).fetchone()[0]
                for f in entry["face_ids"]
            ]
        mean = np.mean([np.frombuffer(b, "<f4") for b in blobs], axis=0, dtype=np.float64)
        np.testing.assert_allclose(entry["centroid"], mean / np.linalg.norm(mean), atol=2e-6)
    # Every face is either in a faceset or named by the gate that removed it.
    kept = {f for e in data["facesets"] for f in e["face_ids"]}
    rejected = [f for ids in data["rejected"].values() for f in ids]
    assert kept.isdisjoint(rejected) and len(kept) + len(rejected) == len(table)
    assert data["removed"]["quality"] == len(data["rejected"]["quality"]) > 0
    failing = (
        (table.face_short < defaults.QUALITY_MIN_SHORT)
        | (table.blur < defaults.QUALITY_MIN_BLUR)
        | (table.det_score < defaults.QUALITY_MIN_DET_SCORE)
    )
    assert set(data["rejected"]["quality"]) == {int(f) for f in table.face_id[failing]}

    before = snapshot(out)
    outcome = refine(world.store, out, RefineParams(min_faces=5))
    assert snapshot(out) == before
    assert outcome.summary["files_placed"] == 0

    # A size filter above every set leaves nothing, and removes only what refine wrote.
    (out / "faceset_001" / "keep.txt").write_text("mine")
    empty = refine(world.store, out, RefineParams(min_faces=PER_PERSON + 1))
    assert empty.summary["facesets"] == 0
    assert {k for k in snapshot(out) if not k.startswith(".")} == {
        layout.REFINE_MANIFEST,
        "faceset_001/keep.txt",
    }


# --- extend ------------------------------------------------------------------------------------


def test_extend_keeps_numbers_and_files_new_faces(
    world: World, tmp_path: Path, model_root: Path
) -> None:
    raw, refined = tmp_path / "raw", tmp_path / "refined"
    cluster(world.store, raw)
    refine_small(world, refined)
    before_raw = manifest(raw / layout.CLUSTER_MANIFEST)
    before_sets = manifest(refined / layout.REFINE_MANIFEST)
    old_files = snapshot(raw)
    homes = {p: folder_of_person(world, folders(raw, "person_"), p) for p in PEOPLE}

    later = [p for ps in world.extra.values() for p in ps]
    add_photos(world.store, later, model_root)
    # A second path to a photo already filed appears beside it.
    rumsfeld = world.photos["Donald_Rumsfeld"][4]
    alias = world.src / "backup" / rumsfeld.name
    alias.parent.mkdir()
    shutil.copyfile(rumsfeld, alias)
    world.claim(alias, "Donald_Rumsfeld")
    world.store.register_files([(str(alias), sha256_of(alias), alias.stat().st_size)])
    outcome = extend(world.store, raw, refined)
    assert (raw / homes["Donald_Rumsfeld"] / layout.flattened_name(alias)).samefile(alias)

    after = manifest(raw / layout.CLUSTER_MANIFEST)
    old_numbers = {p["number"]: set(p["face_ids"]) for p in before_raw["persons"]}
    new_numbers = {p["number"]: set(p["face_ids"]) for p in after["persons"]}
    assert all(old_numbers[n] <= new_numbers[n] for n in old_numbers)
    # Nothing that was there moved or changed.
    now = snapshot(raw)
    assert all(now[k] == v for k, v in old_files.items() if k != layout.CLUSTER_MANIFEST)

    groups = folders(raw, "person_")
    blair_home = groups[homes["Tony_Blair"]]
    assert {layout.flattened_name(p) for p in world.extra["Tony_Blair"]} <= blair_home
    assert outcome.summary["joined_persons"] >= len(world.extra["Tony_Blair"])
    top = max(old_numbers)
    for person in NEWCOMERS:
        names = {layout.flattened_name(p) for p in world.extra[person]}
        holding = [f for f, files in groups.items() if names <= files]
        assert len(holding) == 1 and int(holding[0].split("_")[1]) > top
    assert outcome.summary["new_persons"] == len(NEWCOMERS)

    sets = manifest(refined / layout.REFINE_MANIFEST)
    assert [e["name"] for e in sets["facesets"]] == [e["name"] for e in before_sets["facesets"]]
    blair_sha = sha256_of(world.photos["Tony_Blair"][0])
    blair_set = next(e["name"] for e in sets["facesets"] if blair_sha in e["photos"])
    blair_files = folders(refined, blair_set)[blair_set]
    table = world.store.face_table()
    passing = {
        table.sha256[i]
        for i in range(len(table))
        if table.face_short[i] >= defaults.QUALITY_MIN_SHORT
        and table.blur[i] >= defaults.QUALITY_MIN_BLUR
        and table.det_score[i] >= defaults.QUALITY_MIN_DET_SCORE
    }
    expected = {
        layout.flattened_name(p) for p in world.extra["Tony_Blair"] if sha256_of(p) in passing
    }
    assert expected and expected <= blair_files
    check_pure(world, folders(refined, "faceset_"))

    raw_state, refined_state = snapshot(raw), snapshot(refined)
    again = extend(world.store, raw, refined)
    assert snapshot(raw) == raw_state and snapshot(refined) == refined_state
    assert again.summary["new_faces"] == 0


def test_extend_needs_an_existing_output(world: World, tmp_path: Path) -> None:
    with pytest.raises(JobError, match="run `cluster`"):
        extend(world.store, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


# --- consolidate -------------------------------------------------------------------------------


def split_faceset(out: Path, store: FaceStore, name: str) -> str:
    """Split one faceset in two, as refine does when one person's photos straddle two clusters."""
    path = out / layout.REFINE_MANIFEST
    data = manifest(path)
    entry = next(e for e in data["facesets"] if e["name"] == name)
    table = store.face_table()
    row = {int(f): i for i, f in enumerate(table.face_id)}
    half = entry["photos"][len(entry["photos"]) // 2 :]
    number = max(e["number"] for e in data["facesets"]) + 1
    new_name = layout.FACESET_DIR.format(number)
    moved_ids = [f for f in entry["face_ids"] if table.sha256[row[f]] in half]
    entry["face_ids"] = [f for f in entry["face_ids"] if f not in moved_ids]
    for target, ids in ((entry, entry["face_ids"]), (None, moved_ids)):
        if target is None:
            target = {"name": new_name, "number": number, "face_ids": ids}
            data["facesets"].append(target)
        target["photos"] = sorted({table.sha256[row[f]] for f in ids})
        target["centroid"] = vector_json(centroid_of(table.embedding[[row[f] for f in ids]]))
    paths = {img.sha256: [img.path, *img.aliases] for img in store.images()}
    (out / new_name).mkdir()
    written = set(data["written"])
    for sha in half:
        for source in paths[sha]:
            flat = layout.flattened_name(source)
            os.replace(out / name / flat, out / new_name / flat)
            written = (written - {f"{name}/{flat}"}) | {f"{new_name}/{flat}"}
    data["written"] = sorted(written)
    layout.atomic_write_json(path, data)
    return new_name


def test_consolidate_merges_a_split_identity_and_undo_restores_it(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "refined"
    refine_small(world, out)
    split = split_faceset(out, world.store, "faceset_001")
    bush_files = folders(out, "faceset_001")["faceset_001"] | folders(out, split)[split]
    # Someone's own file where the merge would put one of the split set's photos.
    squatter = out / "faceset_001" / sorted(folders(out, split)[split])[0]
    squatter.write_bytes(b"mine")
    split_state = snapshot(out)

    outcome = consolidate(out, world.store)
    assert outcome.summary["foreign_conflicts"] == [f"faceset_001/{squatter.name}"]
    assert squatter.read_bytes() == b"mine"
    assert [(m["target"], m["sources"]) for m in outcome.summary["merges"]] == [
        ("faceset_001", [split])
    ]
    assert outcome.summary["merges"][0]["min_similarity"] >= defaults.CONSOLIDATE_CONFIDENT_SIM
    assert {(c["a"], c["b"]) for c in outcome.summary["candidates"] if c["merged"]} == {
        ("faceset_001", split)
    }
    data = manifest(out / layout.REFINE_MANIFEST)
    assert [e["name"] for e in data["facesets"]] == [
        layout.FACESET_DIR.format(n) for n in range(1, len(PEOPLE) + 1)
    ]
    assert folders(out, "faceset_")["faceset_001"] == bush_files
    assert not (out / split).exists()
    assert {f.name for f in (out / layout.MERGED_DIR / split).iterdir()} <= bush_files
    check_pure(world, folders(out, "faceset_"))
    assert (out / layout.CONSOLIDATE_MANIFEST).is_file()

    merged_state = snapshot(out)
    rerun = consolidate(out, world.store)
    assert rerun.summary["changed"] is False and snapshot(out) == merged_state

    undone = consolidate(out, world.store, ConsolidateParams(undo=True))
    assert undone.summary["undone"] is True
    restored = snapshot(out)
    assert {k: v[0] for k, v in restored.items()} == {k: v[0] for k, v in split_state.items()}
    assert not (out / layout.MERGED_DIR).exists()


def test_consolidate_reports_candidates_without_merging_below_confidence(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "refined"
    refine_small(world, out)
    split = split_faceset(out, world.store, "faceset_002")
    before = snapshot(out)
    dry = consolidate(out, world.store, ConsolidateParams(dry_run=True))
    assert [m["sources"] for m in dry.summary["merges"]] == [[split]]
    assert snapshot(out) == before
    # Confidence above any real similarity: the pair is only a candidate.
    outcome = consolidate(
        out, world.store, ConsolidateParams(candidate_similarity=0.55, confident_similarity=0.999)
    )
    assert outcome.summary["merges"] == []
    assert ("faceset_002", split) in {(c["a"], c["b"]) for c in outcome.summary["candidates"]}
    assert {k: v[0] for k, v in snapshot(out).items() if k != layout.CONSOLIDATE_MANIFEST} == {
        k: v[0] for k, v in before.items()
    }
    with pytest.raises(JobError, match="run `refine`"):
        consolidate(tmp_path / "elsewhere", world.store)


def test_consolidate_stopped_half_way_can_be_undone_or_finished(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "refined"
    refine_small(world, out)
    split = split_faceset(out, world.store, "faceset_003")
    split_state = {k: v[0] for k, v in snapshot(out).items()}

    def no_space(source: Path, target: Path, mode: str) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(consolidate_job, "place", no_space)
    with pytest.raises(OSError, match="No space"):
        consolidate(out, world.store)
    monkeypatch.undo()
    assert not (out / split).exists()  # its folder had already moved to _merged/

    consolidate(out, world.store, ConsolidateParams(undo=True))
    assert {k: v[0] for k, v in snapshot(out).items()} == split_state
    assert not (out / layout.CONSOLIDATE_MANIFEST).exists()

    with pytest.raises(OSError, match="No space"):
        monkeypatch.setattr(consolidate_job, "place", no_space)
        consolidate(out, world.store)
    monkeypatch.undo()
    finished = consolidate(out, world.store)
    assert [m["sources"] for m in finished.summary["merges"]] == [[split]]
    assert not (out / split).exists() and (out / layout.MERGED_DIR / split).is_dir()
    assert len(manifest(out / layout.CONSOLIDATE_MANIFEST)["rounds"]) == 1


# --- dedup -------------------------------------------------------------------------------------


def strip(photo: Path, target: Path) -> Path:
    """A real photo without a face: the bottom strip (suit, desk) of an LFW photo."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(photo) as img:
        img.crop((0, img.height * 7 // 10, img.width, img.height)).save(target)
    return target


def test_dedup_groups_copies_but_not_other_photos_of_the_person(
    world: World, model_root: Path
) -> None:
    edits = world.src / "edits"
    originals = [world.photos["Colin_Powell"][0], world.photos["Ariel_Sharon"][3]]
    blair = world.photos["Tony_Blair"]
    faceless = [strip(blair[0], edits / "strip_0.png"), strip(blair[1], edits / "strip_1.png")]
    copies = {o: variants(o, edits) for o in [*originals, faceless[0]]}
    stored = add_photos(
        world.store, [*faceless, *(c for cs in copies.values() for c in cs)], model_root
    )
    assert all(not image.faces for image in stored[:2])  # the strips really are faceless
    alias = edits / "same_bytes.jpg"
    shutil.copyfile(originals[0], alias)
    world.store.register_files([(str(alias), sha256_of(alias), alias.stat().st_size)])

    outcome = dedup(world.store)
    path = layout.duplicates_path(world.store.path)
    assert outcome.manifest_path == path
    data = manifest(path)
    assert data["identical"] == [
        {"sha256": sha256_of(alias), "paths": [str(originals[0].resolve()), str(alias)]}
    ]
    groups = sorted(({m["sha256"] for m in g["members"]} for g in data["near"]), key=sorted)
    expected = {o: {sha256_of(p) for p in [o, *cs]} for o, cs in copies.items()}
    assert groups == sorted(expected.values(), key=sorted)  # strip_1 and the rest stay alone
    for group in data["near"]:
        # The member to keep is the unedited photo: the most pixels, then the most bytes.
        assert group["keep"] in {sha256_of(o) for o in copies}
        assert all(p["distance"] <= defaults.NEAR_DUPLICATE_THRESHOLD for p in group["pairs"])

    stamp = path.stat().st_mtime_ns
    again = dedup(world.store)
    assert again.summary["report_written"] is False and path.stat().st_mtime_ns == stamp

    # Without feature matches only faces can bring photos into register: same face groups.
    faces_only = manifest(dedup(world.store, DedupParams(min_inliers=10**6)).manifest_path)
    registered = {p["registration"] for g in faces_only["near"] for p in g["pairs"]}
    assert registered == {"face-keypoints"}
    assert sorted(
        ({m["sha256"] for m in g["members"]} for g in faces_only["near"]), key=sorted
    ) == (sorted((expected[o] for o in originals), key=sorted))


def test_dedup_finds_nothing_among_distinct_photos_of_the_same_people(world: World) -> None:
    data = manifest(dedup(world.store).manifest_path)
    assert data["identical"] == [] and data["near"] == []


def test_jobs_on_an_empty_store(tmp_path: Path) -> None:
    store = new_store(tmp_path / "empty.db")
    raw = cluster(store, tmp_path / "raw")
    assert raw.summary["persons"] == 0 and raw.summary["faces_clustered"] == 0
    assert manifest(raw.manifest_path)["written"] == []
    assert refine(store, tmp_path / "refined").summary["facesets"] == 0
    assert extend(store, tmp_path / "raw", tmp_path / "refined").summary["new_faces"] == 0
    assert consolidate(tmp_path / "refined", store).summary["merges"] == []
    assert dedup(store).summary["near_groups"] == 0
    store.close()
