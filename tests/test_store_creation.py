"""A new store appears whole or not at all. Two commands naming one new store at once (two
`facesets embed` of two folders into faces.db) both write it; before, the second could open the
first's half-made file and refuse it as "an empty file" or "not a facesets store"."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from services import FACESETS

# Eight processes open one new store together, released by a barrier: the old creation (the
# file made, then its schema written) lost this race in every round of twenty.
RACE = textwrap.dedent(
    """
    import multiprocessing as mp, sys
    from pathlib import Path
    from facesets.clustering.store import FaceStore

    def open_store(path, barrier, answers):
        barrier.wait()
        try:
            FaceStore(Path(path)).close()
            answers.put("opened")
        except Exception as error:
            answers.put(f"{type(error).__name__}: {error}")

    if __name__ == "__main__":
        context = mp.get_context("fork")
        folder = Path(sys.argv[1])
        for round in range(int(sys.argv[2])):
            path = folder / f"store{round}.db"
            barrier, answers = context.Barrier(8), context.Queue()
            openers = [
                context.Process(target=open_store, args=(path, barrier, answers))
                for _ in range(8)
            ]
            for opener in openers:
                opener.start()
            for opener in openers:
                opener.join()
            for _ in openers:
                print(answers.get())
    """
)


def _images(store: Path) -> int:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        count = int(db.execute("SELECT count(*) FROM images").fetchone()[0])
    db.close()
    return count


def test_openers_racing_on_a_new_store_all_open_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RACE, str(tmp_path), "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = done.stdout.splitlines()
    assert len(answers) == 40
    assert set(answers) == {"opened"}, sorted(set(answers))
    # Each round left one store and nothing it was staged in.
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"store{r}.db" for r in range(5)]


def test_embeds_creating_one_store_at_once_both_write_it(lfw_dir: Path, tmp_path: Path) -> None:
    folders = []
    for index, person in enumerate(("Colin_Powell", "Tony_Blair", "Gerhard_Schroeder")):
        folder = tmp_path / f"photos{index}"
        folder.mkdir()
        for photo in sorted((lfw_dir / person).glob("*.jpg"))[:3]:
            shutil.copy(photo, folder / photo.name)
        folders.append(folder)
    store = tmp_path / "faces.db"
    embeds = [
        subprocess.Popen(
            [*FACESETS, "embed", str(folder), str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in folders
    ]
    for embed in embeds:
        out, err = embed.communicate(timeout=300)
        assert embed.returncode == 0, err
        assert "Traceback" not in err
    # The last command closed the store (no -wal, -shm) and nothing it was staged in is left.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["faces.db"]
    assert _images(store) == 9
