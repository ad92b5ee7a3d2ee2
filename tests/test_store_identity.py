"""A store renamed over while `facesets embed` writes it: the command fails as documented and
nothing more is committed into the detached old file (the identity is checked at each commit,
not only when a stream opens the store). The replacement happens right after the first ingest
commit, seen by reading the store as any other process would."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from facesets.clustering.store import FaceStore, ImageData
from facesets.common import settings
from services import FACESETS

PACK, DIM = "facepack-mini", 128


def _images(path: Path) -> int:
    """Images committed in the store at `path` (0 while it has no table yet)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM images").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def _other_store(path: Path) -> None:
    store = FaceStore(path)
    store.bind_model(PACK, DIM)
    names = [f"{i:064x}" for i in range(3)]
    store.register_files([(f"/photos/{n}.jpg", n, 10) for n in names])
    store.add_images([ImageData(sha256=n, path=f"/photos/{n}.jpg", size=10) for n in names])
    store.close()


def test_a_store_renamed_over_during_embed_takes_no_more_commits(lfw_dir: Path, tmp_path: Path):
    batch = settings.clustering().store.commit_batch
    src = tmp_path / "photos"
    src.mkdir()
    for photo in sorted(lfw_dir.glob("*/*.jpg"))[: batch + batch // 4]:
        shutil.copy(photo, src / photo.name)
    store, kept, other = tmp_path / "faces.db", tmp_path / "kept.db", tmp_path / "other.db"
    _other_store(other)
    embed = subprocess.Popen(
        [*FACESETS, "embed", str(src), str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while (seen := _images(store) if store.exists() else 0) == 0:
            assert embed.poll() is None, embed.communicate()
            assert time.monotonic() < deadline, "no commit in 300 s"
            time.sleep(0.005)
        # The old file and its write-ahead log stay readable under another name: SQLite
        # writes a commit into the log, and never checkpoints into a file that has moved.
        os.link(store, kept)
        os.link(f"{store}-wal", f"{kept}-wal")
        os.replace(other, store)  # `mv other.db faces.db` while the command runs
        out, err = embed.communicate(timeout=300)
    finally:
        if embed.poll() is None:
            embed.kill()
            embed.wait()
    assert seen == batch  # the first commit, not the whole folder
    assert embed.returncode == 1, (out, err)
    assert "replaced" in err and str(store) in err and "Traceback" not in err, err
    # The services are gone; the old file with its log holds everything committed into it.
    assert _images(kept) == seen, "images were committed into the detached store"
    assert _images(store) == 3  # the file now there is untouched
