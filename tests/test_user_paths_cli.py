"""The paths a new user walks through the `facesets` command (and the client library), on real
LFW photos: hostile files in a photo folder, commands that need no model pack, counts that
agree, summaries and progress a person can read, and hints where a user is stuck."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import SHARED

from facesets.client import ImageInput, InferenceClient
from facesets.client.channel import Endpoint
from facesets.contract import layout
from facesets.v1 import common_pb2
from services import (
    FACESETS,
    ServiceProcess,
    copy_store,
    killed_at,
    run_facesets,
    running_services,
    service_flags,
)
from services import run_facesets as run_command

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")
PER_PERSON = 6


def _copy_people(lfw: Path, dest: Path, people: tuple[str, ...] = PEOPLE) -> Path:
    for person in people:
        (dest / person).mkdir(parents=True, exist_ok=True)
        for photo in sorted((lfw / person).glob("*.jpg"))[:PER_PERSON]:
            shutil.copy(photo, dest / person / photo.name)
    return dest


def _without_model_pack() -> dict[str, str]:
    """The environment of a user who never set up a model pack: none can be found or fetched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESETS_MODEL")}
    env["FACESETS_MODEL_ROOT"] = "/nonexistent/models"
    env["FACESETS_MODEL_PACK"] = "buffalo_l"
    env["INSIGHTFACE_HOME"] = "/nonexistent/insightface"
    return env


@pytest.fixture(scope="module")
def pipeline(lfw_dir, tmp_path_factory):
    """`facesets run` over three LFW people: OUT with faces.db, refined/ and export/."""
    src = _copy_people(lfw_dir, tmp_path_factory.mktemp("photos"))
    out = tmp_path_factory.mktemp("out")
    result = run_facesets("run", str(src), str(out), "--min-faces", "3", "--json", timeout=900)
    assert result.returncode == 0, result.stderr
    return src, out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def services(shared_dir, tmp_path_factory):
    """The services that the tests whose commands' start-up is not what they test share."""
    roots = [tmp_path_factory.getbasetemp(), shared_dir]
    with running_services(tmp_path_factory.mktemp("services"), roots) as started:
        yield started


def _on(services):
    """run_facesets for the commands of a test, through the shared services."""

    def run_facesets(*args: str) -> subprocess.CompletedProcess[str]:
        return run_command(*args, *service_flags(services, *args[:2]))

    return run_facesets


# --- 1 and the acceptance: hostile files in a photo folder --------------------------------
def test_embed_finishes_over_a_fifo_a_socket_a_device_link_and_a_folder_named_like_a_photo(
    lfw_dir, tmp_path
):
    photos = tmp_path / "photos"
    photos.mkdir()
    real = sorted((lfw_dir / PEOPLE[0]).glob("*.jpg"))[:2]
    shutil.copy(real[0], photos / real[0].name)
    os.mkfifo(photos / "pipe.jpg")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(photos / "sock.jpg"))
    # A device inside the folder (made where this runs as root), and a link out to one: the
    # link is left unread with the links out of the folder, the device is reported unreadable.
    devices = []
    if os.geteuid() == 0:
        os.mknod(photos / "null.jpg", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        devices.append("null.jpg")
    (photos / "zero.jpg").symlink_to("/dev/zero")
    (photos / "x.jpg").mkdir()  # a folder named like a photo: walked like any folder
    shutil.copy(real[1], photos / "x.jpg" / real[1].name)
    store = tmp_path / "faces.db"
    try:
        result = run_facesets("embed", str(photos), str(store), "--json", timeout=180)
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    unreadable = 2 + len(devices)
    assert summary["embedded"] == 2 and summary["unreadable"] == unreadable
    assert summary["skipped"] == {"link out of the folder": 1}
    assert "skipped 1 file: link out of the folder 1" in result.stderr
    reasons = {Path(item["path"]).name: item["error"] for item in summary["unreadable_files"]}
    assert "FIFO" in reasons["pipe.jpg"]
    assert "socket" in reasons["sock.jpg"]
    for name in devices:
        assert "character device" in reasons[name]
    for name in ("pipe.jpg", "sock.jpg", *devices):
        assert f"unreadable {photos / name}" in result.stderr  # each said to the user
    assert summary["store"]["images"] == 2
    assert summary["store"]["errors_by_reason"] == {"ERROR_REASON_UNREADABLE": unreadable}


@pytest.mark.parametrize("send", ["path", "bytes"])
def test_embed_reads_no_file_outside_the_folder_through_a_link(lfw_dir, tmp_path, services, send):
    """A link to a photo elsewhere (another person's folder, a private one) is left unread,
    whether the command sends bytes (its own read) or paths (the service's); a link to a photo
    inside the folder is another name for it, and one that points nowhere is reported."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    photos, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    photos.mkdir()
    elsewhere.mkdir()
    inner, private = sorted((lfw_dir / PEOPLE[0]).glob("*.jpg"))[:2]
    shutil.copy(inner, photos / "inner.jpg")
    shutil.copy(private, elsewhere / "private.jpg")
    (photos / "out.jpg").symlink_to(elsewhere / "private.jpg")
    (photos / "out-relative.jpg").symlink_to(Path("..") / "elsewhere" / "private.jpg")
    (photos / "alias.jpg").symlink_to("inner.jpg")
    (photos / "gone.jpg").symlink_to("nothing-here.jpg")
    store = tmp_path / "faces.db"
    result = run_facesets("embed", str(photos), str(store), "--send", send, "--json", "--verbose")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == {"link out of the folder": 2}
    for name in ("out.jpg", "out-relative.jpg"):
        assert f"skipped {photos / name}  (a link to a file outside the folder" in result.stderr
    assert summary["embedded"] == 1 and summary["unreadable"] == 1
    assert [Path(item["path"]).name for item in summary["unreadable_files"]] == ["gone.jpg"]
    with sqlite3.connect(store) as db:
        digests = {row[0] for row in db.execute("SELECT sha256 FROM images")}
        paths = {Path(row[0]).name for row in db.execute("SELECT path FROM paths")}
    private_digest = hashlib.sha256((elsewhere / "private.jpg").read_bytes()).hexdigest()
    assert private_digest not in digests
    assert hashlib.sha256(inner.read_bytes()).hexdigest() in digests
    assert {"inner.jpg", "alias.jpg"} <= paths and not paths & {"out.jpg", "out-relative.jpg"}


def _registered(store: Path, path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            found = db.execute("SELECT 1 FROM paths WHERE path = ?", (str(path),)).fetchone()
        db.close()
    except sqlite3.Error:
        return False
    return found is not None


@pytest.mark.parametrize("send", ["path", "bytes"])
def test_embed_stores_nothing_for_a_photo_written_to_after_it_was_hashed(
    lfw_dir, tmp_path, services, send
):
    """A photo replaced between the command's hashing and its reading (by the service, or by
    the command to send its bytes) is not read: before, the other content's faces were stored
    under the first content's digest. The next embed takes the new content."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    photos, store = tmp_path / "photos", tmp_path / "faces.db"
    photos.mkdir()
    # Enough photos ahead of it (listed in order) that inference reaches it seconds after
    # the listing registered it: the change lands in between.
    for photo in sorted(lfw_dir.glob("[A-B]*/*.jpg"))[:250]:
        shutil.copy(photo, photos / photo.name)
    target = photos / "zzz_last.jpg"
    first, second = sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[:2]
    shutil.copy(first, target)
    embed = subprocess.Popen(
        [
            *FACESETS,
            "embed",
            str(photos),
            str(store),
            "--send",
            send,
            "--json",
            *service_flags(services, "embed"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _registered(store, target):
            assert embed.poll() is None, embed.communicate()
            assert time.monotonic() < deadline, "the photo was never registered"
            time.sleep(0.005)
        shutil.copyfile(second, target)  # written in place: another photo, another size
        out, err = embed.communicate(timeout=300)
    finally:
        if embed.poll() is None:
            embed.kill()
            embed.wait()
    assert embed.returncode == 0, err
    summary = json.loads(out)
    assert summary["changed_files"] == [str(target)], summary
    assert f"changed {target}  (written to while it was embedded" in err
    assert summary["embedded"] == 250 and summary["failed"] == 0
    with sqlite3.connect(store) as db:
        digests = {row[0] for row in db.execute("SELECT sha256 FROM images")}
    db.close()
    old, new = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second))
    assert old not in digests and new not in digests

    again = run_facesets("embed", str(photos), str(store), "--send", send, "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["embedded"] == 1 and summary["changed_files"] == []
    with sqlite3.connect(store) as db:
        digests = {row[0] for row in db.execute("SELECT sha256 FROM images")}
    db.close()
    assert new in digests and old not in digests
    check = run_facesets("store", "check", str(store))
    assert check.returncode == 0, check.stdout + check.stderr


def test_embed_skips_names_that_are_not_utf8_and_embeds_the_rest(lfw_dir, tmp_path, services):
    """A file and a folder named in Latin-1 (an old disk, a zip) are skipped with how to rename
    them; they used to end the whole embed with an encoding error, nothing embedded."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    photos = tmp_path / "photos"
    photos.mkdir()
    good, latin, inside = sorted((lfw_dir / PEOPLE[1]).glob("*.jpg"))[:3]
    shutil.copy(good, photos / good.name)
    shutil.copy(latin, os.fsencode(photos) + b"/caf\xe9.jpg")
    os.mkdir(os.fsencode(photos) + b"/f\xf6lder")
    shutil.copy(inside, os.fsencode(photos) + b"/f\xf6lder/" + inside.name.encode())
    store = tmp_path / "faces.db"
    result = run_facesets("embed", str(photos), str(store), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["embedded"] == 1 and summary["skipped"] == {"name not UTF-8": 2}
    assert "skipped 2 files: name not UTF-8 2" in result.stderr
    verbose = run_facesets("embed", str(photos), str(store), "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stderr.count("is not valid UTF-8") == 2 and "convmv" in verbose.stderr
    with sqlite3.connect(store) as db:
        assert [Path(p).name for (p,) in db.execute("SELECT path FROM images")] == [good.name]


def test_embed_leaves_out_a_facesets_output_kept_among_the_photos(pipeline, tmp_path, services):
    """A run's OUT (store, cluster folders of linked photos, export crops, thumbnails) kept
    inside the photo folder is not embedded again: its crops would come back as new faces of
    each faceset, and its linked photos as aliases, at every run."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    src, out, _ = pipeline
    photos = tmp_path / "photos"
    shutil.copytree(src, photos)
    shutil.copytree(out, photos / "facesets-2024")
    originals = sorted(p for p in src.rglob("*.jpg"))
    store = tmp_path / "faces.db"
    result = run_facesets("embed", str(photos), str(store), "--json", "--verbose")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == {"facesets output folder": 1}
    assert "skipped 1 folder: facesets output folder 1" in result.stderr  # a folder, not a file
    assert f"skipped {photos / 'facesets-2024'}  (a folder facesets wrote" in result.stderr
    assert summary["files"] == len(originals)
    with sqlite3.connect(store) as db:
        paths = [Path(p) for (p,) in db.execute("SELECT path FROM paths")]
    assert paths and all("facesets-2024" not in p.parts for p in paths)


def test_no_job_writes_its_output_among_the_photos(pipeline, tmp_path, services):
    """cluster, refine and export-swap into the photo folder (or a folder above it) are
    refused before they write anything there, even their lock file: before, their folders of
    linked photos and crops came back as aliases and new photos at the next embed."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    src, out, _ = pipeline
    photos, store = tmp_path / "photos", tmp_path / "faces.db"
    shutil.copytree(src, photos)
    embedded = run_facesets("embed", str(photos), str(store), "--json")
    assert embedded.returncode == 0, embedded.stderr
    plan = out / layout.RUN_REFINE_DIR / layout.REFINE_MANIFEST
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for args, folder in (
        (("cluster", str(store), str(photos)), photos),
        (("refine", str(store), str(photos / "Tony_Blair")), photos / "Tony_Blair"),
        (("cluster", str(store), str(tmp_path)), tmp_path),
        (("export-swap", str(store), str(plan), str(photos)), photos),
    ):
        refused = run_facesets(*args)
        assert refused.returncode == 1, (args, refused.stderr)
        assert f"{folder} holds photos this store embedded" in refused.stderr, refused.stderr
        assert "Name an output folder that holds none of them" in refused.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # A folder beside the photos is no problem, and the next embed finds nothing new.
    done = run_facesets("cluster", str(store), str(tmp_path / "people"), "--json")
    assert done.returncode == 0, done.stderr
    again = run_facesets("embed", str(photos), str(store), "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["aliases_added"] == 0 and summary["files"] == summary["known"]


def test_embed_names_a_folder_it_cannot_list(lfw_dir, tmp_path, services):
    """A subfolder without read permission used to be left out without a word (os.walk's
    default): its photos are now said to be left out, on stderr and in the summary. The
    command runs without the capability that lets root read any folder."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the capability to read any folder")
    photos = tmp_path / "photos"
    (photos / "locked").mkdir(parents=True)
    first, second = sorted((lfw_dir / PEOPLE[0]).glob("*.jpg"))[:2]
    shutil.copy(first, photos / first.name)
    shutil.copy(second, photos / "locked" / second.name)
    (photos / "locked").chmod(0)
    store = tmp_path / "faces.db"
    without = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    command = [*without, *FACESETS, "embed", str(photos), str(store), "--json"]
    try:
        done = subprocess.run(
            [*command, *service_flags(services, "embed")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        (photos / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["embedded"] == 1 and summary["skipped"] == {"unreadable folder": 1}
    assert (
        f"skipped {photos / 'locked'}  (a folder that cannot be listed (Permission denied): "
        "its photos are left out)" in done.stderr
    )


def test_a_folder_the_user_may_not_write_is_named_with_what_to_do(pipeline, tmp_path):
    """An export on a read-only share, an output folder under one: the job says which folder
    it may not write and what to do, where it said `[Errno 13] Permission denied: .../
    .facesets.lock`. The commands (and the services they start) run without root's
    capability to write anywhere."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the capability to write any folder")
    _, out, _ = pipeline
    shared = tmp_path / "share"
    export = shared / "export"
    shutil.copytree(out / layout.RUN_EXPORT_DIR, export)
    (export / layout.WRITER_LOCK).unlink(missing_ok=True)
    before = sorted(p.relative_to(shared) for p in shared.rglob("*"))
    without = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    modes = {p: p.stat().st_mode for p in [shared, *shared.rglob("*")] if p.is_dir()}
    for folder in modes:
        folder.chmod(0o555)
    try:
        report = subprocess.run(
            [*without, *FACESETS, "report", str(export)], capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        cluster = subprocess.run(
            [*without, *FACESETS, "cluster", str(out / layout.RUN_STORE), str(shared / "people")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        for folder, mode in modes.items():
            folder.chmod(mode)
    assert report.returncode == 1, report.stderr
    assert f"cannot write in {export} (no permission for this user)" in report.stderr
    assert "Errno" not in report.stderr
    assert cluster.returncode == 1, cluster.stderr
    assert f"cannot create the output folder {shared / 'people'}" in cluster.stderr
    assert sorted(p.relative_to(shared) for p in shared.rglob("*")) == before


def test_embed_of_a_fifo_alone_does_not_block(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    os.mkfifo(photos / "pipe.jpg")
    result = run_facesets("embed", str(photos), str(tmp_path / "faces.db"), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "unreadable        1" in result.stdout
    assert "is a FIFO (named pipe), not a regular file" in result.stderr


# --- 9: the counts of an embed agree -------------------------------------------------------
def test_embed_counts_a_fake_photo_as_failed_not_embedded(lfw_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = sorted((lfw_dir / PEOPLE[1]).glob("*.jpg"))[0]
    shutil.copy(good, photos / good.name)
    (photos / "fake.jpg").write_bytes(b"hi")
    result = run_facesets("embed", str(photos), str(tmp_path / "faces.db"))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["embedded"].split()[2] == "1", result.stdout
    assert lines["failed"].split()[1] == "1" and "not_an_image 1" in lines["failed"]
    assert lines["unreadable"].split()[1] == "0"
    again = run_facesets("embed", str(photos), str(tmp_path / "other.db"), "--json")
    summary = json.loads(again.stdout)
    assert summary["embedded"] + summary["failed"] == 2
    assert summary["failed"] == sum(summary["errors"].values()) == 1


# --- 10: the client library answers a missing file and goes on ----------------------------
def test_client_embed_answers_a_missing_file_and_the_photos_after_it(lfw_dir, tmp_path):
    from conftest import free_port

    photos = sorted((lfw_dir / PEOPLE[2]).glob("*.jpg"))[:3]
    os.mkfifo(tmp_path / "pipe.jpg")
    # Files read here only while inside the folder they were listed in: a link out of it, and
    # a folder swapped for a link to another one after the listing, are refused unread.
    album = tmp_path / "album"
    album.mkdir()
    (album / "link.jpg").symlink_to(photos[0])
    (album / "sub").symlink_to(photos[0].parent, target_is_directory=True)
    service = ServiceProcess(
        "inference", free_port(), tmp_path / "inference.log", roots=[tmp_path, SHARED]
    )
    service.start()
    client = InferenceClient(Endpoint(service.address))
    try:
        client.wait_ready()
        inputs = [
            ImageInput(id="first", path=str(photos[0])),
            ImageInput(id="missing", path=str(tmp_path / "gone.jpg")),
            ImageInput(id="pipe", path=str(tmp_path / "pipe.jpg")),
            ImageInput(id="second", path=str(photos[1])),
            ImageInput(id="third", path=str(photos[2])),
            ImageInput(id="linked", path=str(album / "link.jpg"), within=str(album)),
            ImageInput(id="swapped", path=str(album / "sub" / photos[1].name), within=str(album)),
        ]
        done = threading.Event()
        results: dict[str, common_pb2.ImageResult] = {}

        def consume() -> None:
            for result in client.embed(iter(inputs)):
                results[result.id] = result
            done.set()

        threading.Thread(target=consume, daemon=True).start()
        assert done.wait(120), "the stream did not end"
    finally:
        client.close()
        service.stop()
    assert set(results) == {"first", "missing", "pipe", "second", "third", "linked", "swapped"}
    for bad in ("missing", "pipe", "linked", "swapped"):
        assert results[bad].error.reason == common_pb2.ERROR_REASON_UNREADABLE
        assert not results[bad].faces
    for bad in ("linked", "swapped"):
        assert "a link out of the folder (not followed)" in results[bad].error.message
    assert "gone.jpg" in results["missing"].error.message
    assert "FIFO" in results["pipe"].error.message
    for good in ("first", "second", "third"):
        assert not results[good].HasField("error") and len(results[good].faces) >= 1


# --- 8: commands that run no inference need no model pack ---------------------------------
def test_report_merge_and_restore_run_without_a_model_pack(pipeline, tmp_path):
    _, out, _ = pipeline
    export = tmp_path / "export"
    shutil.copytree(out / layout.RUN_EXPORT_DIR, export)
    env = _without_model_pack()
    sets = sorted(p.name for p in export.glob("faceset_*") if p.is_dir())
    assert len(sets) >= 2

    report = run_facesets("report", str(export), "--json", env=env, timeout=180)
    assert report.returncode == 0, report.stderr
    assert (export / layout.REPORT_DIR / layout.REPORT_INDEX).is_file()

    dry = run_facesets("merge", str(export), sets[1], "--into", sets[0], "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert (export / sets[1]).is_dir()  # a dry run moves nothing

    merged = run_facesets("merge", str(export), sets[1], "--into", sets[0], "--json", env=env)
    assert merged.returncode == 0, merged.stderr
    assert not (export / sets[1]).exists()
    run_id = json.loads(merged.stdout)["run"]
    restored = run_facesets("restore", str(export), "--run", run_id, env=env)
    assert restored.returncode == 0, restored.stderr
    assert (export / sets[1]).is_dir()
    for result in (report, dry, merged, restored):
        assert "model pack" not in result.stderr


# --- 11: summaries list what they found -----------------------------------------------------
def _section(stdout: str, key: str) -> str:
    """The lines a text summary prints below `key` (indented)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [key]) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end])


def _columns(stdout: str, key: str, *names: str) -> list[int]:
    """Where the named columns are in the table below `key`."""
    header = _section(stdout, key).splitlines()[0].split()
    return [header.index(name) for name in names]


def _table_row(stdout: str, *cells: str) -> str:
    """The one line of a text summary that holds every cell."""
    rows = [line for line in stdout.splitlines() if all(c in line.split() for c in cells)]
    assert len(rows) == 1, f"no single row with {cells} in:\n{stdout}"
    return rows[0]


def test_dry_runs_and_age_probe_print_what_they_found_as_tables(pipeline, services, tmp_path):
    src, out, _ = pipeline
    run_facesets = _on(services)
    store = out / layout.RUN_STORE
    config = tmp_path / "folders.toml"
    config.write_text(
        "mixed = []\n\n"
        + "".join(f'[[trusted]]\nlabel = "{p}"\nfolder = "{src / p}"\n\n' for p in PEOPLE)
    )
    args = ("import-folders", str(store), str(tmp_path / "export"), "--config", str(config))
    plan = json.loads(run_facesets(*args, "--dry-run", "--json").stdout)
    text = run_facesets(*args, "--dry-run")
    assert text.returncode == 0, text.stderr
    assert "entries; see the manifest" not in text.stdout
    assert len(plan["folders"]) == len(PEOPLE)
    for folder in plan["folders"]:  # each folder's faces, on its own row
        row = _table_row(_section(text.stdout, "folders"), folder["label"])
        assert [str(folder["faces"]), str(folder["photos"])] == [
            row.split()[i] for i in _columns(text.stdout, "folders", "faces", "photos")
        ]

    args = ("consolidate", str(out / layout.RUN_REFINE_DIR), str(store), "--dry-run")
    args += ("--candidate-similarity", "0", "--confident-similarity", "0")
    merges = json.loads(run_facesets(*args, "--json").stdout)["merges"]
    text = run_facesets(*args)
    assert text.returncode == 0, text.stderr
    assert merges, "every faceset merges at similarity 0"
    for merge in merges:  # which sets would merge into which
        row = _table_row(_section(text.stdout, "merges"), merge["target"])
        assert all(source in row for source in merge["sources"])

    args = ("age", "probe", str(out / layout.RUN_EXPORT_DIR), "faceset_001")
    probe = json.loads(run_facesets(*args, "--json").stdout)
    text = run_facesets(*args)
    assert text.returncode == 0, text.stderr
    histogram = probe["histogram"]
    assert _table_row(text.stdout, "bins").split()[1:] == histogram["bins"]
    assert _table_row(text.stdout, "counts").split()[1:] == [str(c) for c in histogram["counts"]]


def test_export_swap_of_another_store_never_replaces_an_exported_faceset(
    pipeline, services, lfw_dir, tmp_path
):
    """Two libraries exported into one folder: the second export's faceset_001 replaced the
    first's, its crops and .fsz gone (with any merge or clean-up made on them). An entry
    records its store's id; another store's export of the same faceset is refused, unwritten,
    and the first store's own re-export, from wherever it was moved, still replaces it."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    _, out, _ = pipeline
    export = tmp_path / "export"
    shutil.copytree(out / layout.RUN_EXPORT_DIR, export)
    plan = out / layout.RUN_REFINE_DIR / layout.REFINE_MANIFEST
    done = run_facesets("export-swap", str(out / layout.RUN_STORE), str(plan), str(export))
    assert done.returncode == 0, done.stderr  # the entries now record their store
    other = _copy_people(lfw_dir, tmp_path / "other", ("Gerhard_Schroeder", "Ariel_Sharon"))
    store, refined = tmp_path / "other.db", tmp_path / "refined"
    for args in (("embed", str(other), str(store)), ("refine", str(store), str(refined))):
        made = (
            run_facesets(*args, "--min-faces", "3") if args[0] == "refine" else run_facesets(*args)
        )
        assert made.returncode == 0, made.stderr
    before = {p: p.read_bytes() for p in sorted(export.rglob("*")) if p.is_file()}

    refused = run_facesets(
        "export-swap", str(store), str(refined / layout.REFINE_MANIFEST), str(export)
    )
    assert refused.returncode == 1, refused.stderr
    assert "faceset_001 in this export was exported from another face store" in refused.stderr
    assert str(out / layout.RUN_STORE) in refused.stderr
    after = {p: p.read_bytes() for p in sorted(export.rglob("*")) if p.is_file()}
    assert after == before
    # The first store moved (a run's OUT renamed): still the same store, its own re-export.
    moved = tmp_path / "renamed-out" / layout.RUN_STORE
    moved.parent.mkdir()
    copy_store(out / layout.RUN_STORE, moved)
    again = run_facesets("export-swap", str(moved), str(plan), str(export))
    assert again.returncode == 0, again.stderr
    # A store made anew where the entries' store was (rebuilt for another model pack, say):
    # the same library's, as far as anything can tell; its export (of facesets refined from
    # it: the old plan's face ids are the old store's) replaces them.
    with sqlite3.connect(moved) as db:
        db.execute("UPDATE meta SET value = 'a-new-store' WHERE key = 'store_id'")
    db.close()
    replan = run_facesets("refine", str(moved), str(tmp_path / "replan"), "--min-faces", "3")
    assert replan.returncode == 0, replan.stderr
    plan = tmp_path / "replan" / layout.REFINE_MANIFEST
    rebuilt = run_facesets("export-swap", str(moved), str(plan), str(export))
    assert rebuilt.returncode == 0, rebuilt.stderr


def test_no_job_reads_or_replaces_what_another_store_made(pipeline, services, lfw_dir, tmp_path):
    """The same mistake one level up: refine or cluster of a second library into the first's
    folders replaced its facesets (and the consolidations made on them), and consolidate,
    extend and export-swap read the first's face ids in the second store, where they name
    other people (same model, so nothing noticed). Each is refused before anything is written;
    the first store, moved, still works on its own folders."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    _, out, _ = pipeline
    raw, refined = tmp_path / "raw", tmp_path / "refined"
    shutil.copytree(out / layout.RUN_RAW_DIR, raw)
    shutil.copytree(out / layout.RUN_REFINE_DIR, refined)
    other = _copy_people(lfw_dir, tmp_path / "other", ("Gerhard_Schroeder", "Ariel_Sharon"))
    store = tmp_path / "other.db"
    made = run_facesets("embed", str(other), str(store))
    assert made.returncode == 0, made.stderr
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    replacing = {
        "refine": ("refine", str(store), str(refined), "--min-faces", "3"),
        "cluster": ("cluster", str(store), str(raw)),
    }
    for command, args in replacing.items():
        refused = run_facesets(*args)
        assert refused.returncode == 1, (command, refused.stderr)
        assert "holds the " + command + " output of another face store" in refused.stderr
        assert str(out / layout.RUN_STORE) in refused.stderr
    reading = {
        "consolidate": ("consolidate", str(refined), str(store)),
        "extend": ("extend", str(store), str(raw), "--refine-out", str(refined)),
        "export-swap": (
            "export-swap",
            str(store),
            str(refined / layout.REFINE_MANIFEST),
            str(tmp_path / "export"),
        ),
    }
    for command, args in reading.items():
        refused = run_facesets(*args)
        assert refused.returncode == 1, (command, refused.stderr)
        assert "was made from the face store " + str(out / layout.RUN_STORE) in refused.stderr
    export = out / layout.RUN_EXPORT_DIR
    probe = run_facesets("age", "probe", str(export), "faceset_001", "--store", str(store))
    assert probe.returncode == 1, probe.stderr
    assert "faceset_001 in " + str(export) + " was exported from the face store" in probe.stderr
    # discover of the second library beside the first's export: the first's facesets are no
    # known identities here (their face ids named some of this store's people, who went).
    (tmp_path / "empty-export").mkdir()
    found = {}
    for name, beside in (("alone", tmp_path / "empty-export"), ("beside", export)):
        args = ("discover", str(store), str(other), str(beside), "--dry-run", "--json")
        done = run_facesets(*args, "--min-faces", "3")
        assert done.returncode == 0, done.stderr
        found[name] = json.loads(done.stdout)
    assert sorted(found["beside"]["new"].values()) == sorted(found["alone"]["new"].values())
    assert found["beside"]["known_facesets"] == 0
    exported = json.loads((export / layout.EXPORT_MANIFEST).read_text())["facesets"]
    assert found["beside"]["other_store_facesets"] == sorted(exported)
    # Reviewing the first's export with the second store: its marks of different people (the
    # first's face ids) would keep other faces of the second apart in every later refine.
    review = run_command("review", str(export), "--store", str(store), "--no-browser", timeout=120)
    assert review.returncode == 1, review.stderr
    assert f"{export} was exported from {out / layout.RUN_STORE}, not {store}" in review.stderr
    after = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert after == before
    assert not (tmp_path / "export").exists()
    assert not (export / layout.DISCOVER_DIR).exists()  # dry runs

    # The first store, moved (a run's OUT renamed): its own folders, its jobs run as before.
    moved = tmp_path / "renamed-out" / layout.RUN_STORE
    moved.parent.mkdir()
    copy_store(out / layout.RUN_STORE, moved)
    for args in (
        ("refine", str(moved), str(refined), "--min-faces", "3"),
        ("extend", str(moved), str(raw), "--refine-out", str(refined)),
    ):
        done = run_facesets(*args)
        assert done.returncode == 0, (args[0], done.stderr)


def test_an_export_and_a_clustering_output_never_share_a_folder(pipeline, services, tmp_path):
    """Arguments swapped, or a folder reused: export-swap into `cluster`'s folder merged its
    entries into cluster's manifest.json (the same name), which cluster then refused to read,
    its person folders no longer its own; into refine's folder, or refine into an export, each
    put its folders among the other's. Each is refused, nothing written."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    _, out, _ = pipeline
    folders = {
        name: shutil.copytree(out / name, tmp_path / name)
        for name in (layout.RUN_RAW_DIR, layout.RUN_REFINE_DIR, layout.RUN_EXPORT_DIR)
    }
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    store = str(out / layout.RUN_STORE)
    plan = str(folders[layout.RUN_REFINE_DIR] / layout.REFINE_MANIFEST)
    for into, wrote in ((layout.RUN_RAW_DIR, "cluster"), (layout.RUN_REFINE_DIR, "refine")):
        refused = run_facesets("export-swap", store, plan, str(folders[into]))
        assert refused.returncode == 1, refused.stderr
        assert f"holds the output of `facesets {wrote}`, not an export" in refused.stderr
    refused = run_facesets("refine", store, str(folders[layout.RUN_EXPORT_DIR]))
    assert refused.returncode == 1, refused.stderr
    assert "is an export (its manifest.json is export-swap's)" in refused.stderr
    after = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert after == before
    redone = run_facesets("cluster", store, str(folders[layout.RUN_RAW_DIR]))
    assert redone.returncode == 0, redone.stderr  # its own folder, as it left it


def test_refine_again_after_new_photos_keeps_each_persons_number(
    pipeline, services, lfw_dir, tmp_path
):
    """refine numbered its facesets anew at each run (largest first): with the photos of a new
    person embedded, a refine again gave the first people other numbers, and the export, its
    review decisions and the user knew them by the old ones. Each keeps its number; the new
    person takes the next."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    _, out, _ = pipeline
    store = copy_store(out / layout.RUN_STORE, tmp_path / layout.RUN_STORE)
    refined = tmp_path / "refined"
    shutil.copytree(out / layout.RUN_REFINE_DIR, refined)
    before = json.loads((refined / layout.REFINE_MANIFEST).read_text())["facesets"]
    # A person with more photos than any: refine's order (largest first) puts them first.
    newcomer = tmp_path / "more" / "George_W_Bush"
    newcomer.mkdir(parents=True)
    for photo in sorted((lfw_dir / "George_W_Bush").glob("*.jpg"))[: PER_PERSON + 4]:
        shutil.copy(photo, newcomer / photo.name)
    embedded = run_facesets("embed", str(newcomer.parent), str(store))
    assert embedded.returncode == 0, embedded.stderr
    again = run_facesets("refine", str(store), str(refined), "--min-faces", "3")
    assert again.returncode == 0, again.stderr
    after = json.loads((refined / layout.REFINE_MANIFEST).read_text())["facesets"]
    by_number = {entry["number"]: set(entry["face_ids"]) for entry in after}
    for entry in before:
        assert set(entry["face_ids"]) <= by_number[entry["number"]], entry["name"]
    assert len(after) == len(before) + 1
    assert max(by_number) == max(entry["number"] for entry in before) + 1


CONSOLIDATE_CRASH = killed_at(
    "facesets.clustering.jobs.consolidate.place",
    "2",
    """
    from facesets.clustering.jobs import consolidate as job
    from facesets.clustering.store import FaceStore
    from facesets.contract.clustering import ConsolidateParams
    everything = ConsolidateParams(candidate_similarity=-0.9, confident_similarity=-0.8)
    job.consolidate(Path(sys.argv[1]), FaceStore(Path(sys.argv[2])), everything)
    """,
)


def test_a_consolidation_cut_short_is_rolled_back_by_refine_and_extend(
    pipeline, services, tmp_path
):
    """A consolidation killed half-way had moved facesets to _merged/ and linked their photos
    into the target, its refine manifest not yet written. A refine run over the folder then
    made the moved facesets again beside _merged/ and left the linked photos (another
    person's) in the target, and the next consolidate's rollback wrote the old refine manifest
    back over refine's. refine and extend roll such a round back before anything else."""
    run_facesets = _on(services)  # the command's start-up is not what is tested
    _, out, _ = pipeline
    store = tmp_path / layout.RUN_STORE
    copy_store(out / layout.RUN_STORE, store)
    refined, raw = tmp_path / "refined", tmp_path / "raw"
    shutil.copytree(out / layout.RUN_REFINE_DIR, refined)
    shutil.copytree(out / layout.RUN_RAW_DIR, raw)

    def folder(root: Path) -> dict[str, object]:
        """Every file of the folder; of its manifest, the facesets and the files it owns
        (refine records the store's path, here the copy's)."""
        files: dict[str, object] = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != layout.REFINE_MANIFEST
        }
        plan = json.loads((root / layout.REFINE_MANIFEST).read_text())
        files[layout.REFINE_MANIFEST] = (plan["facesets"], plan["written"])
        return files

    before = folder(refined)
    for command in (
        ("refine", str(store), str(refined), "--min-faces", "3"),
        ("extend", str(store), str(raw), "--refine-out", str(refined)),
    ):
        crashed = subprocess.run(
            [sys.executable, "-c", CONSOLIDATE_CRASH, str(refined), str(store)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert crashed.returncode == 9, crashed.stderr[-2000:]
        assert (refined / layout.MERGED_DIR).is_dir()  # half-way: facesets moved aside
        done = run_facesets(*command)
        assert done.returncode == 0, (command[0], done.stderr)
        assert folder(refined) == before, command[0]


def test_export_swap_leaves_out_a_photo_replaced_since_embed(pipeline, services, lfw_dir, tmp_path):
    """A photo replaced by another person's of the same size is not cropped into a faceset:
    the export checks each photo's bytes against the digest the store embedded it under."""
    src, out, _ = pipeline
    run_facesets = _on(services)  # the command's start-up is not what is tested
    photos, store = tmp_path / "photos", tmp_path / "faces.db"
    shutil.copytree(src, photos)
    with sqlite3.connect(out / layout.RUN_STORE) as original, sqlite3.connect(store) as copy:
        original.backup(copy)
        for table in ("images", "paths"):
            copy.execute(f"UPDATE {table} SET path = replace(path, ?, ?)", (str(src), str(photos)))
    plan = out / layout.RUN_REFINE_DIR / layout.REFINE_MANIFEST
    export = tmp_path / "export"

    def export_swap() -> dict:
        done = run_facesets("export-swap", str(store), str(plan), str(export), "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    export_swap()
    manifest = export / layout.FACESET_DIR.format(1) / layout.FACESET_MANIFEST
    crops = json.loads(manifest.read_text())["crops"]
    victim = crops[0]
    replaced = Path(victim["source"])
    assert replaced.parent.parent == photos and (export / victim["file"]).is_file()
    shutil.copy(sorted((lfw_dir / "George_W_Bush").glob("*.jpg"))[0], replaced)  # 250x250 too

    summary = export_swap()
    skipped = {item["face_id"]: item for item in summary["skipped_sources"]}
    assert set(skipped) == {victim["face_id"]}
    assert "changed since it was embedded" in skipped[victim["face_id"]]["error"]
    after = json.loads(manifest.read_text())
    assert victim["face_id"] not in {crop["face_id"] for crop in after["crops"]}
    dropped = {d["face_id"]: d["reason"] for d in after["dropped"]}
    assert dropped[victim["face_id"]] == "unreadable"
    assert not (export / victim["file"]).exists()  # the export's own crop, removed


# --- 12: progress into a file or a pipe is plain lines --------------------------------------
def test_progress_into_a_pipe_is_plain_periodic_lines(pipeline, lfw_dir, tmp_path):
    _, out, _ = pipeline
    photos = _copy_people(lfw_dir, tmp_path / "photos", PEOPLE[:1])
    env = {**os.environ, "FACESETS_PROGRESS_INTERVAL_S": "0"}  # a line at every step
    embedded = run_facesets("embed", str(photos), str(tmp_path / "faces.db"), env=env)
    export = tmp_path / "export"
    shutil.copytree(out / layout.RUN_EXPORT_DIR, export)
    shutil.rmtree(export / layout.REPORT_DIR)
    report = run_facesets("report", str(export), env=env)
    plan = out / layout.RUN_REFINE_DIR / layout.REFINE_MANIFEST
    swapped = run_facesets(
        "export-swap", str(out / layout.RUN_STORE), str(plan), str(tmp_path / "swap"), env=env
    )
    for result in (embedded, report, swapped):
        assert result.returncode == 0, result.stderr
        assert "\x1b[" not in result.stderr and "\r" not in result.stderr
    hashing = [line for line in embedded.stderr.splitlines() if line.startswith("hashing: ")]
    assert len(hashing) >= 2 and hashing[-1].startswith(f"hashing: {PER_PERSON}/{PER_PERSON} ")
    assert any(line.startswith("embedding: ") for line in embedded.stderr.splitlines())
    assert any(": " in line and "/" in line for line in report.stderr.splitlines())
    # Every stage's last line says it finished (the face rows' read said 0/N).
    reading = [line for line in swapped.stderr.splitlines() if line.startswith("read faces: ")]
    assert reading and re.match(r"read faces: (\d+)/\1 \(100%\)", reading[-1]), reading


# --- 13: hints where a user is stuck --------------------------------------------------------
def test_a_dry_run_on_a_missing_store_says_to_embed_first(pipeline, tmp_path):
    src, out, _ = pipeline
    missing = tmp_path / "faces.db"
    config = tmp_path / "folders.toml"
    config.write_text(f'mixed = []\n\n[[trusted]]\nlabel = "a"\nfolder = "{src / PEOPLE[0]}"\n')
    export = out / layout.RUN_EXPORT_DIR
    for args in (
        ("import-folders", str(missing), str(tmp_path / "e"), "--config", str(config)),
        ("discover", str(missing), str(src), str(tmp_path / "e")),
        ("consolidate", str(out / layout.RUN_REFINE_DIR), str(missing)),
        ("age", "split", str(export), "faceset_001", "--store", str(missing)),
    ):
        result = run_facesets(*args, "--dry-run")
        assert result.returncode == 1, result.stdout
        assert f"`facesets embed PHOTOS {missing}`" in result.stderr, result.stderr
    assert not missing.exists()


def test_discover_dry_run_over_photos_the_store_lacks_says_so(pipeline, lfw_dir, tmp_path):
    _, out, _ = pipeline
    store = tmp_path / "faces.db"
    shutil.copy(out / layout.RUN_STORE, store)
    elsewhere = _copy_people(lfw_dir, tmp_path / "new", ("Gerhard_Schroeder",))
    export = out / layout.RUN_EXPORT_DIR
    result = run_facesets("discover", str(store), str(elsewhere), str(export), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "faces_under_root             0" in result.stdout
    assert f"the store holds no face of a photo under {elsewhere}" in result.stderr
    assert f"`facesets embed {elsewhere} {store}`" in result.stderr


WIDE = ("--recover-threshold", "1.5", "--tighten-threshold", "1.5", "--sub-threshold", "0.6")
WIDE += ("--min-short", "10", "--min-blur", "0", "--min-det-score", "0.1")


def test_age_split_refuses_an_identity_without_capture_dates(pipeline):
    _, out, _ = pipeline
    export = out / layout.RUN_EXPORT_DIR
    result = run_facesets("age", "split", str(export), "faceset_001", *WIDE, "--dry-run")
    assert result.returncode == 1, result.stdout
    assert "cannot be split by age" in result.stderr
    assert "has a capture date" in result.stderr


def test_age_extend_with_photos_outside_the_source_folders_says_where_they_must_be(
    lfw_dir, services, tmp_path
):
    from dated_photos import dated_copy

    run_facesets = _on(services)  # the four commands' start-up is not what is tested
    photos = sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))
    src = tmp_path / "photos"
    for i, photo in enumerate(photos[:10]):
        dated_copy(photo, src / "blair" / photo.name, f"{1999 + 6 * (i % 2)}:05:10 12:00:00")
    out = tmp_path / "run"
    made = run_facesets("run", str(src), str(out), "--min-faces", "3", "--json")
    assert made.returncode == 0, made.stderr
    export = out / layout.RUN_EXPORT_DIR
    era = ("--anchor-min-faces", "3", "--era-years", "3")
    split = run_facesets("age", "split", str(export), "faceset_001", *WIDE, *era)
    assert split.returncode == 0, split.stderr
    elsewhere = tmp_path / "later"
    for photo in photos[10:14]:
        dated_copy(photo, elsewhere / photo.name, "2010:01:01 12:00:00")
    embedded = run_facesets("embed", str(elsewhere), str(out / layout.RUN_STORE))
    assert embedded.returncode == 0, embedded.stderr
    extend = run_facesets("age", "extend", str(export), "faceset_001", *WIDE, *era)
    assert extend.returncode == 0, extend.stderr
    assert "no new faces of faceset_001 to slot in" in extend.stderr
    assert f"source folders: {src / 'blair'}" in extend.stderr


def test_video_status_prints_text_unless_json(lfw_dir, tmp_path):
    from videos import ShotSpec, make_video

    face = sorted((lfw_dir / "Aaron_Peirsol").glob("*.jpg"))[0]
    src = tmp_path / "videos"
    make_video(src / "clip.mp4", [ShotSpec(3, (40, 40, 160), face), ShotSpec(2, (160, 60, 40))])
    out = tmp_path / "out"
    ran = run_facesets("video", "run", str(src), str(out), "--json", timeout=300)
    assert ran.returncode == 0, ran.stderr
    facts = json.loads(run_facesets("video", "status", str(out), "--json").stdout)
    text = run_facesets("video", "status", str(out))
    assert text.returncode == 0, text.stderr
    assert not text.stdout.lstrip().startswith("{")
    [(name, video)] = facts["videos"].items()
    row = _table_row(_section(text.stdout, "videos"), name)
    for column in ("planned_segments", "cut_segments", "tracks", "faces"):
        index = _columns(text.stdout, "videos", column)[0]
        assert row.split()[index] == str(video[column])
    assert f"remains                      {facts['remains']}" in text.stdout
