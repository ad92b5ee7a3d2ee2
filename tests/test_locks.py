"""One lock file per target (scripts/locks.py, `make lock`) and each reproduces from the
repository (`make check-locks`): re-resolving changes none, and a changed requirement is seen.
Needs the package registry (a few seconds a lock with uv's cache); skipped, saying so, only
where it cannot be reached."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO
from test_install_resolution import ort_names, registry_reachable


def load_locks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("locks", REPO / "scripts" / "locks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def locks() -> ModuleType:
    if why := registry_reachable():
        pytest.skip(why)
    return load_locks()


def test_every_lock_reproduces_from_the_repository(locks: ModuleType) -> None:
    assert locks.check(REPO) == []


def test_each_lock_holds_its_one_onnxruntime() -> None:
    locks = load_locks()
    for target in locks.TARGETS.values():
        if target is not locks.LINUX:
            names = locks.requirement_names(REPO / target.lock)
            assert ort_names(names) == ({target.ort} if target.ort else set()), target.lock
            assert ("insightface" in names) == bool(target.ort), target.lock


def test_a_changed_requirement_makes_its_locks_stale(locks: ModuleType, tmp_path: Path) -> None:
    # The inputs of every lock, copied: the workspace's pyproject files, uv.lock and locks/.
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    for member in ("clients", "services", "orchestrator"):
        (tmp_path / member).mkdir()
        shutil.copy(REPO / member / "pyproject.toml", tmp_path / member / "pyproject.toml")
    shutil.copytree(REPO / "locks", tmp_path / "locks")
    assert locks.check(tmp_path) == []

    services = tmp_path / "services" / "pyproject.toml"
    text = services.read_text()
    assert '"scenedetect==0.7.2",\n' in text
    services.write_text(text.replace('"scenedetect==0.7.2",\n', ""))

    stale = [line.split(":")[0] for line in locks.check(tmp_path)]
    # The client does not depend on the services: its lock stands.
    assert stale == ["uv.lock", "locks/linux-cuda.txt", "locks/windows-directml.txt"]
