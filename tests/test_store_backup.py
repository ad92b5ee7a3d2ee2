"""`facesets store backup` on a damaged store, into a folder that does not exist, onto a full
disk, onto a file that is no backup, and of a store whose mode is not the temporary file's: a
one-line reason and exit 1 when no backup is made, no folder created, no other file replaced,
and a backup that keeps the store's mode."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from facesets.clustering.store import FaceData, FaceStore, ImageData
from services import run_facesets as run_command


@pytest.fixture(scope="module")
def clustering(module_clustering: list[str]) -> list[str]:
    """The module's clustering service (a command's own start-up is tested elsewhere)."""
    return module_clustering


@pytest.fixture
def run_facesets(clustering: list[str]):
    return lambda *args, **kwargs: run_command(*args, *clustering, **kwargs)


def _store(path: Path, images: int) -> None:
    store = FaceStore(path)
    store.bind_model("facepack-mini", 128)
    rng = np.random.default_rng(1)
    items = []
    for i in range(images):
        sha = f"{i:064x}"
        store.register_files([(f"/photos/{i}.jpg", sha, 10)])
        face = FaceData(
            bbox=(1, 2, 30, 40),
            kps=np.zeros((5, 2), np.float32),
            det_score=0.9,
            embedding=rng.standard_normal(128).astype(np.float32),
            face_short=28.0,
            blur=10.0,
        )
        items.append(ImageData(sha256=sha, path=f"/photos/{i}.jpg", size=10, faces=[face]))
    store.add_images(items)
    store.close()


def _one_line_refusal(result, *words: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_damaged_store_is_refused_in_one_line_and_no_backup_is_left(
    tmp_path: Path, run_facesets
) -> None:
    store, backups = tmp_path / "faces.db", tmp_path / "backups"
    backups.mkdir()
    _store(store, images=200)
    data = bytearray(store.read_bytes())
    data[8192:] = b"\x5a" * (len(data) - 8192)
    store.write_bytes(bytes(data))
    result = run_facesets("store", "backup", str(store), str(backups), timeout=60)
    _one_line_refusal(result, str(store), "damaged", "facesets store check")
    assert list(backups.iterdir()) == []  # neither a backup nor a temporary file


def test_a_backup_creates_no_folder_and_keeps_the_stores_mode(tmp_path: Path, run_facesets) -> None:
    store = tmp_path / "faces.db"
    _store(store, images=3)
    missing = tmp_path / "no-such-folder" / "deeper"
    result = run_facesets("store", "backup", str(store), str(missing / "faces.db"), timeout=60)
    _one_line_refusal(result, str(missing), "does not exist")
    assert not (tmp_path / "no-such-folder").exists()

    for mode in (0o644, 0o640):
        os.chmod(store, mode)
        dest = tmp_path / f"backup-{mode:o}.db"
        made = run_facesets("store", "backup", str(store), str(dest), timeout=60)
        assert made.returncode == 0, made.stderr
        assert stat.S_IMODE(dest.stat().st_mode) == mode


def test_a_backup_onto_a_full_disk_says_so_and_leaves_nothing(
    tmp_path: Path, small_disk: Path, run_facesets
) -> None:
    from conftest import grow

    store = tmp_path / "faces.db"
    _store(store, 400)  # about 0.5 MB: more than the 256 KiB disk holds
    full = run_facesets("store", "backup", str(store), str(small_disk))
    _one_line_refusal(full, f"cannot write the backup {small_disk / store.name}", "disk is full")
    assert "run the same command again" in full.stderr and "store check" not in full.stderr
    assert list(small_disk.iterdir()) == []  # no torn copy, no temporary file
    grow(small_disk, "64m")
    done = run_facesets("store", "backup", str(store), str(small_disk))
    assert done.returncode == 0, done.stderr
    checked = run_facesets("store", "check", str(small_disk / store.name))
    assert checked.returncode == 0, checked.stdout


def test_a_backup_replaces_an_earlier_backup_and_nothing_else(tmp_path: Path, run_facesets) -> None:
    """A DEST that exists is replaced only when it is an earlier backup: notes, another SQLite
    database and a store in use (STORE and DEST swapped) stay as they were."""
    store, older = tmp_path / "faces.db", tmp_path / "older.db"
    _store(store, images=3)
    _store(older, images=5)  # opened by FaceStore: in WAL mode, as a store in use is
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    before = {p: p.read_bytes() for p in (notes, other, older)}

    _one_line_refusal(
        run_facesets("store", "backup", str(store), str(notes), timeout=60),
        str(notes),
        "not a backup",
    )
    _one_line_refusal(
        run_facesets("store", "backup", str(store), str(other), timeout=60),
        str(other),
        "not a backup",
    )
    _one_line_refusal(  # the arguments swapped: the older store would replace the newer
        run_facesets("store", "backup", str(store), str(older), timeout=60),
        str(older),
        "in use",
        "swapped",
    )
    assert {p: p.read_bytes() for p in before} == before

    backup = tmp_path / "backup.db"
    for images in (3, 4):  # the second backup replaces the first
        if images == 4:
            more = FaceStore(store)
            sha = f"{99:064x}"
            more.register_files([("/photos/99.jpg", sha, 10)])
            more.add_images([ImageData(sha256=sha, path="/photos/99.jpg", size=10)])
            more.close()
        made = run_facesets("store", "backup", str(store), str(backup), timeout=60)
        assert made.returncode == 0, made.stderr
        with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as db:
            assert db.execute("SELECT count(*) FROM images").fetchone()[0] == images
        db.close()
