"""`facesets consolidate` after `facesets review`'s "different people": LFW photos of three
people embedded, refined and exported through the `facesets` command and real services. At a
bar only the two most alike identities clear, consolidate merges them (the control); once the
export's two facesets of them are marked as different people (the review app's action, the
export service's MarkDifferent through the client library, with the store), the same
consolidate keeps them apart and merges nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import lfw_people

from facesets.client import Endpoint, ExportClient
from facesets.contract import layout
from facesets.contract.review import MarkDifferentRequest
from facesets.orchestrator.stages import follow
from services import ServiceProcess, run_facesets

PER_PERSON = 6


@pytest.fixture(scope="module")
def addresses(module_services: dict[str, ServiceProcess]) -> dict[str, str]:
    """The module's three services (its commands may use every temporary folder)."""
    return {name: service.address for name, service in module_services.items()}


def facesets(addresses: dict[str, str], *args: str) -> dict:
    """A `facesets` command with --json, on the module's services; its summary."""
    at = [f"--{name}={address}" for name, address in addresses.items()]
    done = run_facesets(*args, *at, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))


def refined_sets(refined: Path) -> dict[str, set[int]]:
    """The face ids of each faceset of a refine output, by name."""
    plan = json.loads((refined / layout.REFINE_MANIFEST).read_text())
    return {f["name"]: set(f["face_ids"]) for f in plan["facesets"]}


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder below folder with its content's digest."""
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        )
        for p in sorted(folder.rglob("*"))
    }


def together(groups: dict[str, set[int]], a: set[int], b: set[int]) -> bool:
    """Whether one faceset holds faces of both groups."""
    return any(a & g and b & g for g in groups.values())


def test_consolidate_keeps_facesets_marked_different_apart(
    addresses: dict[str, str], lfw_dir: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    for person, paths in lfw_people(lfw_dir, 3, PER_PERSON, min_photos=PER_PERSON).items():
        (photos / person).mkdir(parents=True)
        for path in paths:
            shutil.copy(path, photos / person / path.name)
    # `facesets run` lays them out so: OUT/faces.db beside OUT/export (the review app's store).
    store, refined, export = tmp_path / "faces.db", tmp_path / "refined", tmp_path / "export"
    embedding = {k: v for k, v in addresses.items() if k != "export"}
    facesets(embedding, "embed", str(photos), str(store))
    clustering = {"clustering": addresses["clustering"]}
    refine = ["refine", str(store), str(refined), "--min-faces", "4"]
    assert facesets(clustering, *refine)["facesets"] == 3
    facesets(
        addresses,
        "export-swap",
        str(store),
        str(refined / layout.REFINE_MANIFEST),
        str(export),
        "--min-face-short",
        "0",
    )
    exported = json.loads((export / layout.EXPORT_MANIFEST).read_text())["facesets"]
    ids = {
        name: {
            c["face_id"]
            for c in json.loads((export / e["dir"] / layout.FACESET_MANIFEST).read_text())["crops"]
        }
        for name, e in exported.items()
    }
    assert len(ids) == 3 and all(ids.values())

    # The bar: just below the two most alike identities, above every other pair.
    dry = facesets(
        clustering,
        "consolidate",
        str(refined),
        str(store),
        "--candidate-similarity",
        "-1",
        "--dry-run",
    )
    first, second = sorted(dry["candidates"], key=lambda c: -c["similarity"])[:2]
    bar = first["similarity"] - 0.0005
    assert second["similarity"] < bar, dry["candidates"]
    consolidate = ["consolidate", str(refined), str(store), "--candidate-similarity", "-1"]
    consolidate += ["--confident-similarity", str(bar)]
    sets = refined_sets(refined)
    pair = [next(n for n in ids if ids[n] & sets[first[k]]) for k in ("a", "b")]
    assert pair[0] != pair[1] and not together(sets, ids[pair[0]], ids[pair[1]])

    # Without the mark, consolidate merges them into one faceset; undone, as it was.
    before = tree(refined)
    merged = facesets(clustering, *consolidate)
    assert merged["changed"] and merged["facesets_after"] == 2, merged
    assert together(refined_sets(refined), ids[pair[0]], ids[pair[1]])
    facesets(clustering, "consolidate", str(refined), str(store), "--undo")
    assert tree(refined) == before

    # The review app's action: the two facesets are different people (with the store).
    client = ExportClient(Endpoint(addresses["export"]))
    try:
        marked = follow(client.run(MarkDifferentRequest(export, *pair, store)), False)
    finally:
        client.close()
    links = json.loads(Path(str(store) + layout.CANNOT_LINK_SUFFIX).read_text())
    assert list(links["exports"]) == [str(export)], marked

    # The same consolidate now keeps them apart: no merge, no faceset or file changed (only
    # consolidate's own record of the round is new).
    kept = facesets(clustering, *consolidate)
    assert kept["merges"] == [] and kept["facesets_after"] == 3, kept
    assert not together(refined_sets(refined), ids[pair[0]], ids[pair[1]])
    after = tree(refined)
    assert after.pop(layout.CONSOLIDATE_MANIFEST, None) is not None
    assert after == before
