"""Files the commands write through a temporary file (manifests, the duplicates report) read as
any file the user makes: the umask's mode, as the PNG crops and .fsz files have. They were 0600
(mkstemp's mode): another account sharing the output folder read the crops, not the manifests."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from store_fixtures import add_photos, copy_photos, lfw_slice, new_store

from facesets.contract import layout
from services import FACESETS


@pytest.fixture(scope="module")
def store(lfw_dir: Path, model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("modes")
    photos = copy_photos(lfw_slice(lfw_dir, ["Colin_Powell", "Tony_Blair"], 4), root / "photos")
    path = root / "faces.db"
    faces = new_store(path)
    add_photos(faces, [p for group in photos.values() for p in group], model_root)
    faces.close()
    return path


def _run(umask: int, *args: str) -> None:
    """A command starting its own services, which inherit its umask, set by a shell as a
    user's is (no preexec_fn: Python code run between fork and exec in a process that has
    loaded grpc can abort in grpc's fork handlers)."""
    shell = ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh"]
    done = subprocess.run(
        [*shell, *FACESETS, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_manifests_take_the_users_umask(store: Path, tmp_path: Path) -> None:
    people, sets = tmp_path / "people", tmp_path / "sets"
    _run(0o022, "cluster", str(store), str(people))
    _run(0o022, "dedup", str(store))
    _run(0o027, "refine", str(store), str(sets))
    assert _mode(people / layout.CLUSTER_MANIFEST) == 0o644
    assert _mode(layout.duplicates_path(store)) == 0o644
    assert _mode(sets / layout.REFINE_MANIFEST) == 0o640
