"""The staging folder's own files, as `facesets immich import` and `stage` find them on disk.

queue.json names the photos to embed and state.json every asset's outcome; both are read back
as files anyone could have changed. A queue naming a photo outside the folder, or one that is
not what `stage` writes, is refused with the file's name before any photo is read; a folder
moved since staging is read where it is now; a staged photo deleted since, or replaced by a
link, is left out with a warning and fetched again by the next `stage`; an import before any
face was staged does not block the imports after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fake_immich import LFW_FACE_BOX, FakeImmich, lfw_asset, lfw_library

from facesets.contract import layout
from services import FACESETS, run_facesets, service_flags

KEY = "staging-files-key-0001"
PEOPLE = ("Colin_Powell", "Tony_Blair")


def facesets(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMMICH_URL": url, "IMMICH_API_KEY": KEY}
    return run_facesets("immich", *args, env=env)


@pytest.fixture(scope="module")
def photos(lfw_dir: Path) -> list[Path]:
    return [p for person in PEOPLE for p in sorted((lfw_dir / person).glob("*.jpg"))[:4]]


def stage(url: str, staging: Path) -> None:
    done = facesets(
        url, "stage", "--user", "alice", "--staging-root", str(staging), "--no-progress"
    )
    assert done.returncode == 0, done.stderr


def import_(staging: Path, module_services: dict) -> subprocess.CompletedProcess[str]:
    flags = service_flags(module_services, "import")
    return facesets(
        "http://127.0.0.1:9",
        "import",
        *("--user", "alice", "--staging-root", str(staging), "--min-faces", "2", "--json"),
        *flags,
    )


def store_paths(store: Path) -> list[str]:
    if not store.exists():
        return []
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return sorted(row[0] for row in db.execute("SELECT path FROM paths"))


def test_a_queue_naming_other_files_is_refused_and_a_moved_folder_is_read_where_it_is(
    photos: list[Path], lfw_dir: Path, tmp_path: Path, module_services: dict
) -> None:
    staging = tmp_path / "staging"
    with FakeImmich(lfw_library(photos), KEY) as fake:
        stage(fake.url, staging)
    # The folder moves to another disk, copied without its files' times (`cp -r`), and the
    # old one goes: queue.json still names the old one.
    moved = tmp_path / "moved"
    shutil.copytree(staging, moved, copy_function=shutil.copyfile)
    shutil.rmtree(staging)
    queue_path = moved / "alice" / layout.IMMICH_QUEUE
    written = json.loads(queue_path.read_text())
    assert written["root"] == str((staging / "alice").resolve())
    store = moved / "alice" / layout.IMMICH_STORE
    outside = tmp_path / "elsewhere" / "private.jpg"
    outside.parent.mkdir()
    shutil.copy(lfw_dir / "Gerhard_Schroeder" / "Gerhard_Schroeder_0001.jpg", outside)
    outside_sha = hashlib.sha256(outside.read_bytes()).hexdigest()

    def altered(change) -> dict:
        queue = json.loads(json.dumps(written))
        change(queue)
        return queue

    def first_item(key: str, value: object):
        return lambda q: q["items"][0].__setitem__(key, value)

    tampered = {
        "an absolute path": altered(first_item("path", str(outside))),
        "a path climbing out": altered(first_item("path", "../../elsewhere/private.jpg")),
        "a Windows drive": altered(first_item("path", "C:/elsewhere/private.jpg")),
        "a digest that is none": altered(first_item("sha256", "not-a-digest")),
        "an item that is no object": altered(lambda q: q["items"].__setitem__(0, "x")),
        "an item without its digest": altered(lambda q: q["items"][0].pop("sha256")),
        "a newer version": altered(lambda q: q.__setitem__("version", 2)),
        "no items": altered(lambda q: q.pop("items")),
    }
    for what, queue in [*tampered.items(), ("not JSON", "{oops")]:
        queue_path.write_text(queue if isinstance(queue, str) else json.dumps(queue))
        refused = import_(moved, module_services)
        assert refused.returncode == 1, (what, refused.stderr)
        assert str(queue_path) in refused.stderr and "Traceback" not in refused.stderr, what
        assert "[1/3] embed" not in refused.stderr, what  # refused before any photo is read
        assert store_paths(store) == [], what

    # queue.json as stage wrote it, the folder moved: every photo is read where it is now.
    queue_path.write_text(json.dumps(written))
    done = import_(moved, module_services)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["staged"] == len(photos)
    assert result["embed"]["embedded"] == len(photos) and result["embed"]["unreadable"] == 0
    paths = store_paths(store)
    assert len(paths) == len(photos)
    assert all(Path(p).is_relative_to((moved / "alice").resolve()) for p in paths)
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        assert outside_sha not in {row[0] for row in db.execute("SELECT sha256 FROM images")}


def test_a_staged_photo_deleted_or_linked_is_left_out_then_staged_again(
    photos: list[Path], lfw_dir: Path, tmp_path: Path, module_services: dict
) -> None:
    staging = tmp_path / "staging"
    library = lfw_library(photos)
    with FakeImmich(library, KEY) as fake:
        stage(fake.url, staging)
        user_dir = staging / "alice"
        queue = json.loads((user_dir / layout.IMMICH_QUEUE).read_text())["items"]
        deleted, linked = (user_dir / queue[0]["path"]), (user_dir / queue[1]["path"])
        deleted.unlink()
        other = tmp_path / "other.jpg"
        shutil.copy(lfw_dir / "Gerhard_Schroeder" / "Gerhard_Schroeder_0002.jpg", other)
        linked.unlink()
        linked.symlink_to(other)

        first = import_(staging, module_services)
        assert first.returncode == 0, first.stderr
        assert "1 staged photo(s) are no longer in" in first.stderr
        assert "1 staged photo(s) are links" in first.stderr
        result = json.loads(first.stdout)
        assert result["staged"] == len(photos) - 2
        assert result["staged_left_out"] == {"missing": 1, "links": 1, "changed": 0}
        assert result["embed"]["embedded"] == len(photos) - 2
        store = user_dir / layout.IMMICH_STORE
        assert str(linked) not in store_paths(store)
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            shas = {row[0] for row in db.execute("SELECT sha256 FROM images")}
        assert hashlib.sha256(other.read_bytes()).hexdigest() not in shas

        plain = facesets(
            "http://127.0.0.1:9",
            *("import", "--user", "alice", "--staging-root", str(staging), "--min-faces", "2"),
            *service_flags(module_services, "import"),
        )
        assert plain.returncode == 0, plain.stderr
        left_out = "(1 missing, 1 links, 0 changed: left out)"
        assert f"staged photos            {len(photos) - 2} {left_out}" in plain.stdout

        # The next stage fetches both again, and only them, as plain files.
        served = dict(fake.originals_served)
        stage(fake.url, staging)
    again = {k: fake.originals_served[k] - served.get(k, 0) for k in fake.originals_served}
    ids = {item["path"]: item["asset_id"] for item in queue}
    assert {k for k, v in again.items() if v} == {ids[queue[0]["path"]], ids[queue[1]["path"]]}
    assert deleted.is_file() and not linked.is_symlink() and linked.is_file()
    second = import_(staging, module_services)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["staged"] == len(photos)
    assert result["staged_left_out"] == {"missing": 0, "links": 0, "changed": 0}
    assert result["embed"]["embedded"] == 2


def test_an_import_before_any_face_was_staged_does_not_block_the_next(
    photos: list[Path], tmp_path: Path, module_services: dict
) -> None:
    # Immich has not looked for faces yet: nothing is staged, the import finds no face.
    library = [lfw_asset(photo, index=i, faces=[]) for i, photo in enumerate(photos)]
    for asset in library:  # uploaded an hour ago: a "no face" is asked again
        asset.uploaded = datetime.now(UTC) - timedelta(hours=1)
    staging = tmp_path / "staging"
    with FakeImmich(library, KEY) as fake:
        stage(fake.url, staging)
        empty = import_(staging, module_services)
        assert empty.returncode == 0, empty.stderr
        assert json.loads(empty.stdout)["staged"] == 0
        for asset in library:  # Immich's face job has run since
            asset.faces = [LFW_FACE_BOX]
        stage(fake.url, staging)
    done = import_(staging, module_services)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["staged"] == len(photos)
    assert result["route"]["new_facesets"] == len(PEOPLE)


def test_stage_refuses_a_state_file_it_cannot_read_and_leaves_it_as_it_was(
    photos: list[Path], tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    with FakeImmich(lfw_library(photos[:2]), KEY) as fake:
        stage(fake.url, staging)
        state_path = staging / "alice" / layout.IMMICH_STATE
        written = json.loads(state_path.read_text())
        some = next(iter(written["assets"]))

        def altered(key: str, value: object) -> str:
            state = json.loads(json.dumps(written))
            if value is None:
                state["assets"][some].pop(key)
            else:
                state["assets"][some][key] = value
            return json.dumps(state)

        cases = {
            "a staged asset without its path": altered("path", None),
            "a staged path climbing out": altered("path", "../../elsewhere.jpg"),
            "a status it does not know": altered("status", "deleted"),
            "a size that is no number": altered("size", "big"),
            "not JSON": "{oops",
        }
        for what, text in cases.items():
            state_path.write_text(text)
            refused = facesets(fake.url, "stage", "--user", "alice", "--staging-root", str(staging))
            assert refused.returncode == 3, (what, refused.stderr)  # set-up error, not an outage
            assert str(state_path) in refused.stderr and "Traceback" not in refused.stderr, what
            assert state_path.read_text() == text, what  # not rewritten
        state_path.write_text(json.dumps(written))
        stage(fake.url, staging)
    assert json.loads(state_path.read_text())["assets"] == written["assets"]


def test_stage_writes_nothing_through_a_link_in_the_staging_folder(
    photos: list[Path], tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    with FakeImmich(lfw_library(photos[:3]), KEY) as fake:
        stage(fake.url, staging)
        user_dir = staging / "alice"
        items = json.loads((user_dir / layout.IMMICH_QUEUE).read_text())["items"]
        top = items[0]["path"].split("/")[0]
        # The staged folder is moved elsewhere and a link takes its place; its photos go.
        outside = tmp_path / "outside"
        (user_dir / top).rename(outside)
        (user_dir / top).symlink_to(outside, target_is_directory=True)
        shutil.rmtree(outside)
        outside.mkdir()
        again = facesets(
            fake.url, "stage", "--user", "alice", "--staging-root", str(staging), "--no-progress"
        )
    assert again.returncode == 1, again.stderr  # the assets' errors, retried next run
    assert not list(outside.iterdir())  # not a file, not a folder
    state = json.loads((user_dir / layout.IMMICH_STATE).read_text())["assets"]
    errors = [r for r in state.values() if r["status"] == "error"]
    assert len(errors) == 3 and all(
        "nothing is written through links" in r["reason"] for r in errors
    )


def test_a_full_disk_stops_stage_clearly_and_the_same_command_goes_on(
    photos: list[Path], tmp_path: Path
) -> None:
    """The staging disk fills mid-run (a file size limit, `prlimit --fsize`, makes the bigger
    downloads fail as a full disk does): stage stops at once with its own exit code and says
    what to do, keeps what it staged, leaves no partial download; the same command, with
    space, stages the rest and downloads nothing twice. One worker, so that the photos come
    in the order Immich lists them."""
    # Immich lists the newest first: the last of the library, the smallest photo, fits under
    # the limit; the next one listed does not.
    six = sorted(photos[:6], key=lambda p: p.stat().st_size, reverse=True)
    sizes = sorted(p.stat().st_size for p in six)
    limit = (sizes[0] + sizes[1]) // 2
    staging = tmp_path / "staging"
    args = ["immich", "stage", "--user", "alice", "--staging-root", str(staging), "--no-progress"]
    with FakeImmich(lfw_library(six), KEY) as fake:
        env = {**os.environ, "IMMICH_URL": fake.url, "IMMICH_API_KEY": KEY}
        full = subprocess.run(
            ["prlimit", f"--fsize={limit}", "--", *FACESETS, *args, "--workers", "1"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert full.returncode == 5, full.stderr
        assert f"stopped: the disk of {(staging / 'alice').resolve()} is full" in full.stdout
        assert "run the same command to go on" in full.stdout and "Traceback" not in full.stderr
        user_dir = staging / "alice"
        state = json.loads((user_dir / layout.IMMICH_STATE).read_text())["assets"]
        assert all(r["status"] == "staged" for r in state.values())  # no asset made an error
        kept = {asset_id: r["path"] for asset_id, r in state.items()}
        assert len(kept) == 1
        data = {asset.id: asset.data for asset in fake.assets.values()}
        assert all((user_dir / path).read_bytes() == data[a] for a, path in kept.items())
        assert not (user_dir / ".partial").exists()

        done = subprocess.run(
            [*FACESETS, *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr
    state = json.loads((user_dir / layout.IMMICH_STATE).read_text())["assets"]
    assert len(state) == len(six) and all(r["status"] == "staged" for r in state.values())
    assert all((user_dir / r["path"]).read_bytes() == data[a] for a, r in state.items())
    assert all(fake.originals_served[a] == 1 for a in kept)  # what was kept is not fetched again


def test_staged_photos_changed_in_place_are_left_out_then_staged_again(
    photos: list[Path], tmp_path: Path, module_services: dict
) -> None:
    """One photo grows (an editor saving over it): import leaves it out (it would route its
    faces by the digest staging recorded) and stage fetches it again. One keeps its size with
    other bytes: its modification time, then its bytes, tell stage. One keeps its bytes under
    another time (a copy): read as staged, hashed once. Only the first two are fetched."""
    staging = tmp_path / "staging"
    with FakeImmich(lfw_library(photos[:4]), KEY) as fake:
        stage(fake.url, staging)
        user_dir = staging / "alice"
        items = json.loads((user_dir / layout.IMMICH_QUEUE).read_text())["items"]
        grown, edited, touched = (user_dir / item["path"] for item in items[:3])
        grown.write_bytes(grown.read_bytes() + b"\0" * 64)
        data = bytearray(edited.read_bytes())
        data[len(data) // 2] ^= 0xFF
        edited.write_bytes(bytes(data))
        os.utime(edited, ns=(0, 10**18))  # another time, whatever the clock's resolution
        os.utime(touched, ns=(0, 2 * 10**18))
        imported = import_(staging, module_services)
        assert imported.returncode == 0, imported.stderr
        assert "1 staged photo(s) changed since they were staged" in imported.stderr
        result = json.loads(imported.stdout)
        assert result["staged_left_out"] == {"missing": 0, "links": 0, "changed": 1}
        assert str(grown.resolve()) not in store_paths(user_dir / layout.IMMICH_STORE)
        served = dict(fake.originals_served)
        stage(fake.url, staging)
        again = {k: v - served.get(k, 0) for k, v in fake.originals_served.items()}
    assert {k for k, v in again.items() if v} == {items[0]["asset_id"], items[1]["asset_id"]}
    for item, path in zip(items[:2], (grown, edited), strict=True):
        assert path.read_bytes() == fake.assets[item["asset_id"]].data
    state = json.loads((user_dir / layout.IMMICH_STATE).read_text())["assets"]
    assert state[items[2]["asset_id"]]["mtime_ns"] == 2 * 10**18  # hashed once, not again
    done = import_(staging, module_services)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["staged_left_out"]["changed"] == 0
