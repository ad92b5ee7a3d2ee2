"""A full disk where the user meets it: `facesets cluster` writing its person folders onto a
small file system (conftest's `small_disk`, a tmpfs mounted as root) stops with a message that
says the disk is full and what to do; once there is room the same command finishes, with the
same folders as on a roomy disk."""

from __future__ import annotations

from pathlib import Path

from conftest import grow
from store_fixtures import add_photos, copy_photos, lfw_slice, new_store

from services import run_facesets

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def test_cluster_onto_a_full_disk_says_so_and_the_same_command_finishes(
    lfw_dir: Path, model_root: Path, tmp_path: Path, small_disk: Path, module_clustering: list[str]
) -> None:
    photos = copy_photos(lfw_slice(lfw_dir, PEOPLE, 12), tmp_path / "photos")
    store_path = tmp_path / "faces.db"
    add_photos(new_store(store_path), [p for group in photos.values() for p in group], model_root)
    command = ["cluster", str(store_path), "--link-mode", "copy"]
    roomy = run_facesets(*command[:2], str(tmp_path / "roomy"), *command[2:], *module_clustering)
    assert roomy.returncode == 0, roomy.stderr

    out = small_disk / "out"
    full = run_facesets(*command[:2], str(out), *command[2:], *module_clustering)
    assert full.returncode == 1, full.stderr
    assert "the disk is full; free some space and run the same command again" in full.stderr
    assert f"cannot write in {out}/" in full.stderr and ".tmp" not in full.stderr
    assert "Traceback" not in full.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no torn copy left

    grow(small_disk, "64m")
    again = run_facesets(*command[:2], str(out), *command[2:], *module_clustering)
    assert again.returncode == 0, again.stderr
    assert files_under(out) == files_under(tmp_path / "roomy")
