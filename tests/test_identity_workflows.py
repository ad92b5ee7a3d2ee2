"""`facesets import-folders` and `facesets discover` on LFW photos, through real services.

import-folders: hand-sorted folders (copies of LFW photos, one folder per person) plus a mixed
folder of group photos made by joining LFW photos side by side. discover: a mixed folder of
known and new LFW people beside an export that already knows some of them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from store_fixtures import copy_photos, lfw_slice

from facesets.clustering.store import FaceStore
from facesets.contract.layout import read_json
from services import ServiceProcess, run_facesets

KNOWN = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")
STRANGER = "Gerhard_Schroeder"
PER_PERSON = 6


@pytest.fixture(scope="module")
def addresses(module_services: dict[str, ServiceProcess]) -> list[str]:
    """The module's three services (its commands work in their own temporary folders: the
    services may use every one of them, and the sample data)."""
    return [f"--{name}={service.address}" for name, service in module_services.items()]


def facesets(addresses: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    if args[0] == "embed":  # embed talks to two of the three
        addresses = [a for a in addresses if not a.startswith("--export")]
    done = run_facesets(*args, *addresses)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def side_by_side(photos: list[Path], target: Path) -> Path:
    """One group photo: the photos joined left to right, enlarged so that the faces pass the
    export's size gate as a real group photo's would."""
    images = []
    for photo in photos:
        with Image.open(photo) as image:
            w, h = image.size
            images.append(image.convert("RGB").resize((w * 8 // 5, h * 8 // 5)))
    joined = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)))
    x = 0
    for image in images:
        joined.paste(image, (x, 0))
        x += image.width
    target.parent.mkdir(parents=True, exist_ok=True)
    joined.save(target, "JPEG", quality=95)
    return target


def write_config(path: Path, trusted: dict[str, Path], mixed: list[Path]) -> Path:
    lines = ["mixed = [" + ", ".join(json.dumps(str(m)) for m in mixed) + "]", "top_n = 5", ""]
    for label, folder in trusted.items():
        lines += ["[[trusted]]", f'label = "{label}"', f"folder = {json.dumps(str(folder))}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def central_embeddings(store_path: Path) -> dict[str, np.ndarray]:
    """Per photo path of a store, the embedding of the face nearest the image centre."""
    store = FaceStore(store_path)
    table = store.face_table(with_embeddings=True)
    assert table.embedding is not None
    by_sha: dict[str, tuple[float, np.ndarray]] = {}
    sizes = {row.sha256: (row.width, row.height, row.path) for row in store.images()}
    for i, sha in enumerate(table.sha256):
        w, h, _ = sizes[sha]
        x1, y1, x2, y2 = table.bbox[i]
        off = float(np.hypot((x1 + x2) / 2 - w / 2, (y1 + y2) / 2 - h / 2))
        if sha not in by_sha or off < by_sha[sha][0]:
            by_sha[sha] = (off, table.embedding[i])
    return {sizes[sha][2]: emb for sha, (_, emb) in by_sha.items()}


def test_import_folders_makes_one_faceset_per_folder_and_routes_group_photos(
    addresses, lfw_dir, tmp_path
):
    people = lfw_slice(lfw_dir, [*KNOWN, STRANGER], PER_PERSON + 3)
    sorted_dir = tmp_path / "sorted"
    trusted = copy_photos({p: people[p][:PER_PERSON] for p in KNOWN}, sorted_dir)
    # A bystander in a hand-sorted folder: the two passes leave the stranger out.
    side_by_side(
        [people["Colin_Powell"][PER_PERSON], people[STRANGER][0]],
        sorted_dir / "Colin_Powell" / "with_stranger.jpg",
    )
    mixed = tmp_path / "mixed"
    powell, blair, rumsfeld, stranger = (people[p][PER_PERSON + 1 :] for p in (*KNOWN, STRANGER))
    groups = {
        side_by_side([powell[0], blair[0]], mixed / "powell_blair.jpg"): {"Powell", "Blair"},
        side_by_side([blair[1], rumsfeld[0]], mixed / "blair_rumsfeld.jpg"): {"Blair", "Rumsfeld"},
        side_by_side([rumsfeld[1], stranger[0]], mixed / "rumsfeld_x.jpg"): {"Rumsfeld"},
        side_by_side([stranger[1], powell[1]], mixed / "x_powell.jpg"): {"Powell"},
    }
    labels = {"Powell": "Colin_Powell", "Blair": "Tony_Blair", "Rumsfeld": "Donald_Rumsfeld"}
    config = write_config(
        tmp_path / "folders.toml", {k: sorted_dir / v for k, v in labels.items()}, [mixed]
    )
    store, export = tmp_path / "faces.db", tmp_path / "export"
    assert trusted  # copies made
    run = ("import-folders", str(store), str(export), "--config", str(config), "--json")
    first = json.loads(facesets(addresses, *run).stdout)
    assert first["empty_folders"] == []

    # Every trusted folder is one faceset, named after its label.
    top = read_json(export / "manifest.json")
    entries = {e["label"]: e for e in top["facesets"].values()}
    assert sorted(entries) == sorted(labels)
    for label, entry in entries.items():
        set_dir = export / entry["dir"]
        assert (set_dir / f"{label}.txt").is_file()
        assert (set_dir / f"{label}_all.fsz").is_file()
        assert (set_dir / f"{label}_top5.fsz").is_file()

    # Each group photo lands in every faceset whose person it shows and in no other.
    plan = read_json(export / ".import-folders" / "refine_manifest.json")
    by_label = {e["label"]: e for e in plan["facesets"]}
    for photo, shown in groups.items():
        holding = {label for label, e in by_label.items() if sha256_of(photo) in e["photos"]}
        assert holding == shown, (photo.name, holding)
    # The bystander of Powell's folder was left out of Powell's identity.
    with_stranger = sha256_of(sorted_dir / "Colin_Powell" / "with_stranger.jpg")
    faces_of = {e["label"]: set(e["face_ids"]) for e in plan["facesets"]}
    store_table = FaceStore(store).face_table()
    ids_in_photo = {
        int(f)
        for f, s in zip(store_table.face_id, store_table.sha256, strict=True)
        if s == with_stranger
    }
    assert len(ids_in_photo) == 2 and len(ids_in_photo & faces_of["Powell"]) == 1

    # The crops of each faceset show its person: re-embedded, nearest its own identity.
    crops_dir, crops_store = tmp_path / "crops", tmp_path / "crops.db"
    copied: dict[str, tuple[str, str]] = {}  # copy -> (label, source photo)
    for label, entry in entries.items():
        for crop in read_json(export / entry["manifest"])["crops"]:
            target = crops_dir / label / Path(crop["file"]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(export / crop["file"], target)
            copied[str(target)] = (label, crop["source"])
    facesets(addresses, "embed", str(crops_dir), str(crops_store))
    crops = central_embeddings(crops_store)
    centroids = {k: np.asarray(e["identity_centroid"], np.float32) for k, e in by_label.items()}
    names = sorted(centroids)
    matrix = np.stack([centroids[k] for k in names])
    from_groups = 0
    for path, (label, source) in copied.items():
        embedding = crops[path]
        distances = 1.0 - matrix @ (embedding / np.linalg.norm(embedding))
        assert names[int(np.argmin(distances))] == label, (path, distances)
        assert distances.min() <= 0.55, (path, distances)
        from_groups += Path(source).parent == mixed
    assert from_groups >= 4 and {label for label, _ in copied.values()} == set(labels)

    # Re-running changes nothing; a dry run writes nothing.
    again = json.loads(facesets(addresses, *run).stdout)
    assert again["changed"] is False and again["numbers"] == first["numbers"]
    assert read_json(export / "manifest.json")["facesets"].keys() == top["facesets"].keys()
    before = tree_hash(export)
    dry = json.loads(facesets(addresses, *run, "--dry-run").stdout)
    assert dry["dry_run"] is True and dry["changed"] is False
    assert tree_hash(export) == before


def enlarged_copies(people: dict[str, list[Path]], dest: Path) -> dict[str, list[Path]]:
    """Copies at 1.6x under dest/<Person>/ (faces the size of a phone photo's)."""
    copied: dict[str, list[Path]] = {}
    for person, photos in people.items():
        (dest / person).mkdir(parents=True, exist_ok=True)
        copied[person] = []
        for photo in photos:
            with Image.open(photo) as image:
                w, h = image.size
                image.convert("RGB").resize((w * 8 // 5, h * 8 // 5)).save(
                    dest / person / photo.name, "JPEG", quality=95
                )
            copied[person].append(dest / person / photo.name)
    return copied


def test_discover_finds_new_people_only_and_dry_run_writes_nothing(addresses, lfw_dir, tmp_path):
    known, new, few = ("Colin_Powell", "Tony_Blair"), ("Donald_Rumsfeld", STRANGER), "Ariel_Sharon"
    store, export = tmp_path / "faces.db", tmp_path / "export"
    sorted_dir = tmp_path / "sorted"
    enlarged_copies(lfw_slice(lfw_dir, known, PER_PERSON), sorted_dir)
    config = write_config(tmp_path / "folders.toml", {p: sorted_dir / p for p in known}, [])
    facesets(addresses, "import-folders", str(store), str(export), "--config", str(config))
    top_before = read_json(export / "manifest.json")
    assert len(top_before["facesets"]) == 2

    root = tmp_path / "inbox"
    inbox = enlarged_copies(lfw_slice(lfw_dir, known, PER_PERSON, skip=PER_PERSON), root)
    inbox |= enlarged_copies(lfw_slice(lfw_dir, new, PER_PERSON), root)
    inbox |= enlarged_copies(lfw_slice(lfw_dir, [few], 2), root)
    person_of = {sha256_of(p): person for person, photos in inbox.items() for p in photos}
    run = ("discover", str(store), str(root), str(export), "--min-faces", "4", "--json")

    # A dry run plans from what the store holds: embed the inbox first.
    facesets(addresses, "embed", str(root), str(store))
    before = tree_hash(export)
    dry = json.loads(facesets(addresses, *run, "--dry-run").stdout)
    assert tree_hash(export) == before
    assert dry["new_facesets"] == len(new) and not dry["written"]
    assert not (export / ".discover").exists()
    kept = [c for c in dry["clusters"] if c["kept"]]
    assert len(kept) == len(new) and all(c["survivors"] <= c["size"] for c in dry["clusters"])
    assert dry["faces_known"] >= len(known) * (PER_PERSON - 2)

    found = json.loads(facesets(addresses, *run).stdout)
    assert found["new_facesets"] == len(new)
    top = read_json(export / "manifest.json")
    for name, entry in top_before["facesets"].items():
        assert top["facesets"][name] == entry  # existing entries untouched
    plan = read_json(export / ".discover" / "refine_manifest.json")
    assert sorted(e["number"] for e in plan["facesets"]) == [3, 4]  # past the maximum
    shown = [{person_of[sha] for sha in e["photos"]} for e in plan["facesets"]]
    assert sorted(map(sorted, shown)) == [[p] for p in sorted(new)]  # one new person each
    for entry in plan["facesets"]:
        marker = export / entry["name"] / "DISCOVERED.txt"
        assert str(root) in marker.read_text(encoding="utf-8")
        assert entry["name"] in top["facesets"]

    again = json.loads(facesets(addresses, *run).stdout)
    assert again["new_facesets"] == 0


def test_folders_config_and_parameters_are_checked_before_any_service_starts(tmp_path):
    (tmp_path / "alice").mkdir()
    bad_threshold = tmp_path / "bad.toml"
    bad_threshold.write_text(
        "[thresholds]\nfirst_pass = 0.4\nsecond_pass = 0.5\n"
        '[[trusted]]\nlabel = "Alice"\nfolder = "alice"\n',
        encoding="utf-8",
    )
    missing = tmp_path / "missing.toml"
    missing.write_text('[[trusted]]\nlabel = "Bob"\nfolder = "bob"\n', encoding="utf-8")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('treshold = 1\n[[trusted]]\nlabel = "A"\nfolder = "alice"\n')
    # A folder inside another: its photos would join both identities.
    (tmp_path / "alice" / "holiday").mkdir()
    nested = tmp_path / "nested.toml"
    nested.write_text(
        '[[trusted]]\nlabel = "Alice"\nfolder = "alice"\n'
        '[[trusted]]\nlabel = "Bob"\nfolder = "alice/holiday"\n'
    )
    for config, said in (
        (bad_threshold, "second_pass_threshold must be at most first_pass_threshold"),
        (missing, "is not a folder"),
        (unknown, "unknown key(s) treshold"),
        (nested, f"the folder of 'Bob' ({tmp_path / 'alice' / 'holiday'}) is or lies inside"),
    ):
        done = run_facesets(
            "import-folders", str(tmp_path / "s.db"), str(tmp_path / "e"), "--config", str(config)
        )
        assert done.returncode == 1 and said in done.stderr, done.stderr
    done = run_facesets(
        "discover",
        str(tmp_path / "s.db"),
        str(tmp_path),
        str(tmp_path / "e"),
        "--known-threshold",
        "0",
    )
    assert done.returncode == 1 and "known_threshold must be a cosine distance" in done.stderr
    assert not (tmp_path / "e").exists() and not (tmp_path / "s.db").exists()
