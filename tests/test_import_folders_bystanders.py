"""`facesets import-folders` on LFW photos that show bystanders, and on a folder that mixes two
people: a photo gives its hand-sorted identity one face at most, and the mixed folder is
flagged (summary, plan, faceset marker, report), through real services."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from store_fixtures import copy_photos, lfw_slice
from test_identity_workflows import addresses, facesets, sha256_of  # noqa: F401

from facesets.clustering.store import FaceStore
from facesets.contract.layout import read_json

# George_W_Bush photos where the mini pack finds a bystander beside him (two or three faces).
WITH_BYSTANDERS = ("0018", "0020", "0021", "0022", "0024")
MIXED_PEOPLE = ("Colin_Powell", "Tony_Blair")


def write_config(path: Path, trusted: dict[str, Path]) -> Path:
    # Passes loose enough to keep the mini pack's bystanders (0.75 to 1.2 from the centroid):
    # the one-face-per-photo rule, not the thresholds, has to keep them out.
    lines = ["top_n = 5", "", "[thresholds]", "first_pass = 1.4", "second_pass = 1.3", ""]
    for label, folder in trusted.items():
        lines += ["[[trusted]]", f'label = "{label}"', f"folder = {json.dumps(str(folder))}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_a_photo_gives_one_face_and_a_folder_of_two_people_is_flagged(
    addresses: list[str],  # noqa: F811
    lfw_dir: Path,
    tmp_path: Path,
) -> None:
    bush = sorted((lfw_dir / "George_W_Bush").glob("*.jpg"))[13:25]  # 0014 to 0025
    assert {p.stem[-4:] for p in bush} >= set(WITH_BYSTANDERS)
    sorted_dir = tmp_path / "sorted"
    copy_photos({"George_W_Bush": bush}, sorted_dir)
    # Someone sorted two people into one folder: 7 photos of each.
    two = copy_photos(lfw_slice(lfw_dir, MIXED_PEOPLE, 7), tmp_path / "two")
    mixed_folder = sorted_dir / "Powell_or_Blair"
    mixed_folder.mkdir()
    for photo in [p for photos in two.values() for p in photos]:
        photo.rename(mixed_folder / photo.name)
    config = write_config(
        tmp_path / "folders.toml",
        {"Bush": sorted_dir / "George_W_Bush", "Powell_or_Blair": mixed_folder},
    )
    store, export = tmp_path / "faces.db", tmp_path / "export"
    run = ("import-folders", str(store), str(export), "--config", str(config), "--json")
    summary = json.loads(facesets(addresses, *run).stdout)

    # The bystanders were found and are in the store: the photos hold more faces than photos.
    table = FaceStore(store).face_table()
    faces_per_photo = Counter(table.sha256)
    bush_photos = {sha256_of(sorted_dir / "George_W_Bush" / p.name) for p in bush}
    assert sum(faces_per_photo[s] for s in bush_photos) >= len(bush) + len(WITH_BYSTANDERS)

    folders = {f["label"]: f for f in summary["folders"]}
    assert folders["Bush"]["same_photo_dropped"] >= len(WITH_BYSTANDERS)
    assert folders["Bush"]["after_second_pass"] == len(bush)
    assert folders["Bush"]["mixed"] is False and folders["Bush"]["purity"] >= 0.9

    # The plan: one face per photo in the identity.
    plan = read_json(export / ".import-folders" / "refine_manifest.json")
    by_label = {e["label"]: e for e in plan["facesets"]}
    photo_of = dict(zip((int(f) for f in table.face_id), table.sha256, strict=True))
    bush_faces = [photo_of[f] for f in by_label["Bush"]["face_ids"]]
    assert len(bush_faces) == len(set(bush_faces)) == len(bush)

    # The folder of two people: all 14 kept, and flagged as more than one person.
    assert folders["Powell_or_Blair"]["after_second_pass"] == 14
    assert folders["Powell_or_Blair"]["mixed"] is True
    assert folders["Powell_or_Blair"]["purity"] <= 0.6
    assert summary["mixed_people_folders"] == ["Powell_or_Blair"]
    assert by_label["Powell_or_Blair"]["flags"] == ["mixed-people"]
    assert "flags" not in by_label["Bush"]
    top = {e["label"]: e for e in read_json(export / "manifest.json")["facesets"].values()}
    assert top["Powell_or_Blair"]["flags"] == ["mixed-people"] and "flags" not in top["Bush"]
    marker = export / top["Powell_or_Blair"]["dir"] / "Powell_or_Blair.txt"
    assert "more than one person" in marker.read_text()
    report = (export / "report" / "index.html").read_text()
    assert "mixed-people" in report

    # export-swap with gates that let every face through (LFW faces are small, bystanders
    # smaller): still no two crops of one photo.
    swap = tmp_path / "swap"
    plan_path = export / ".import-folders" / "refine_manifest.json"
    facesets(addresses, "export-swap", str(store), str(plan_path), str(swap),
             "--outlier-threshold", "1.5", "--min-face-short", "30", "--json")  # fmt: skip
    entry = next(e for e in read_json(swap / "manifest.json")["facesets"].values()
                 if e.get("label") == "Bush")  # fmt: skip
    crops = read_json(swap / entry["manifest"])["crops"]
    sources = [c["source"] for c in crops]
    assert len(crops) >= len(bush) - 2  # a blurred face may drop, no more
    assert len(sources) == len(set(sources)), Counter(sources).most_common(3)
