"""Issue 27, points 3, 7, 14 and 15, through the `facesets` command on a real export of LFW
photos: a restore of a merge never silently reverts a later run's records; maintenance
rebuilds the report it touched; the report says which thresholds its flags use; .fsz member
names name no source folder."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from report_export import build_library_export
from review_export import build_lfw_export

from facesets.common import settings
from facesets.contract import layout
from facesets.export.fsz import PNG_SIGNATURE
from services import ServiceProcess, run_facesets, service_flags

MEMBER = re.compile(r"\d{4}_[0-9a-f]{10}\.png")


def ok(module_services: dict[str, ServiceProcess], *args: str) -> dict:
    done = run_facesets(*args, "--json", *service_flags(module_services, args[0]), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout) if done.stdout.strip() else {}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path, model_root: Path) -> dict:
    """Three LFW people, five photos each, exported by `facesets export-swap` into one faceset
    each (the refine manifest names the largest face of each photo)."""
    return build_lfw_export(
        tmp_path_factory.mktemp("freshness"), lfw_dir, model_root, lookalikes=False
    )


@pytest.fixture
def export(exported: dict, tmp_path: Path) -> Path:
    copy = tmp_path / "export"
    shutil.copytree(exported["export"], copy)
    return copy


def _plant_byte_copy(export: Path, into: str) -> str:
    """A byte copy of faceset_000's best PNG in `into`'s faces/: dedup-optimize drops it."""
    original = sorted((export / "faceset_000" / layout.CROPS_DIR).glob("*.png"))[0]
    copy = export / into / layout.CROPS_DIR / "zz_copy.png"
    shutil.copyfile(original, copy)
    return f"{into}/{layout.CROPS_DIR}/zz_copy.png"


def _files(export: Path) -> dict[str, bytes]:
    return {
        p.relative_to(export).as_posix(): p.read_bytes()
        for p in sorted(export.rglob("*"))
        if p.is_file() and p.name != layout.WRITER_LOCK
    }


def test_fsz_members_name_no_source_folder(exported: dict) -> None:
    """Point 15: members are `<rank>_<short hash>.png`; the manifest keeps the source."""
    export = exported["export"]
    bundles = sorted(export.rglob("*.fsz"))
    assert len(bundles) == 6
    for bundle in bundles:
        inner = json.loads((bundle.parent / layout.FACESET_MANIFEST).read_text())
        crops = sorted(inner["crops"], key=lambda c: c["rank"])
        with zipfile.ZipFile(bundle) as archive:
            names = archive.namelist()
            datas = [archive.read(n) for n in names]
        assert names and all(MEMBER.fullmatch(n) for n in names), names
        assert [int(n[:4]) for n in names] == list(range(1, len(names) + 1))
        assert all(d.startswith(PNG_SIGNATURE) for d in datas)
        assert not any(person in n for n in names for person in exported["people"])
        # Member i is the crop of rank i, whose source photo the manifest names.
        for data, crop in zip(datas, crops, strict=False):
            assert (export / crop["file"]).read_bytes() == data
            assert Path(crop["source"]).parent.name in exported["people"]


def test_restore_of_a_merge_refuses_to_revert_a_later_runs_records(
    export: Path, module_services: dict[str, ServiceProcess]
) -> None:
    """Point 3: merge, then dedup-optimize drops a byte copy from the target, then restore the
    merge: it used to drop the target manifest's `dropped` record, PNG left in _dropped/."""
    merge = ok(module_services, "merge", str(export), "faceset_002", "--into", "faceset_001")
    copy = _plant_byte_copy(export, "faceset_001")
    dedup = ok(module_services, "dedup-optimize", str(export))
    assert [m["src"] for m in dedup["moves"]] == [copy], dedup["moves"]
    before = _files(export)
    refused = run_facesets(
        "restore", str(export), "--run", merge["run"], *service_flags(module_services, "restore")
    )
    assert refused.returncode != 0
    assert dedup["run"] in refused.stderr and "nothing was restored" in refused.stderr
    assert _files(export) == before
    inner = json.loads((export / "faceset_001" / layout.FACESET_MANIFEST).read_text())
    assert [d["kept_file"] for d in inner["dropped"] if d.get("run")] == [copy]
    # In the order it names, both come back.
    ok(module_services, "restore", str(export), "--run", dedup["run"])
    ok(module_services, "restore", str(export), "--run", merge["run"])
    assert (export / "faceset_002" / layout.FACESET_MANIFEST).is_file()
    assert (export / copy).is_file()


def _page(export: Path, partition: str, name: str) -> str:
    return (export / layout.REPORT_DIR / "sets" / partition / f"{name}.html").read_text()


def _row_partition(export: Path, name: str) -> str:
    index = (export / layout.REPORT_DIR / layout.REPORT_INDEX).read_text()
    found = re.search(rf'data-faceset="{name}" data-partition="([^"]+)"', index)
    assert found, f"{name} has no row"
    return found.group(1)


def test_maintenance_rebuilds_the_report_it_touched(
    export: Path, module_services: dict[str, ServiceProcess]
) -> None:
    """Point 7: dedup-optimize, merge and restore rebuild an existing report/; a page's header
    counts the drops it lists; a tooltip shows only what is known of a face."""
    ok(module_services, "report", str(export))
    assert "byte_copy" not in _page(export, "facesets", "faceset_001")
    _plant_byte_copy(export, "faceset_001")
    ok(module_services, "dedup-optimize", str(export))
    page = _page(export, "facesets", "faceset_001")
    header = re.search(r"<span>dropped: ([^<]*)</span>", page)
    assert header and "byte_copy 1" in header.group(1), header
    assert "face None" not in page and "·  ·" not in page and "· </" not in page
    merge = ok(module_services, "merge", str(export), "faceset_002", "--into", "faceset_000")
    assert _row_partition(export, "faceset_002") == "merged"
    ok(module_services, "restore", str(export), "--run", merge["run"])
    assert _row_partition(export, "faceset_002") == "facesets"


def test_report_shows_its_thresholds_and_era_years(
    tmp_path: Path, module_services: dict[str, ServiceProcess]
) -> None:
    """Point 14: the thin flag follows the export (not a fixed 20 that marks most facesets)
    and says its figure; era rows show their years; "small" says its face size."""
    library = build_library_export(
        tmp_path / "export", facesets=12, eras=2, thin_eras=1, masked=0, merged=0, candidates=0
    )
    out = library.out
    top = json.loads((out / layout.EXPORT_MANIFEST).read_text())
    for index, entry in enumerate(top["eras"].values()):
        entry["label"] = f"{2001 + 4 * index}-{2004 + 4 * index}"  # as export-swap keeps it
    for key in ("facesets", "eras", "thin_eras"):
        for entry in top[key].values():
            inner_path = out / entry["manifest"]
            inner = json.loads(inner_path.read_text())
            inner["params"] = {"min_face_short": 100}
            inner_path.write_text(json.dumps(inner))
    (out / layout.EXPORT_MANIFEST).write_text(json.dumps(top))
    ok(module_services, "report", str(out))
    index = (out / layout.REPORT_DIR / layout.REPORT_INDEX).read_text()
    legend = re.search(r'data-thin-below="(\d+)">([^<]*)<', index)
    assert legend, "no legend of the thin flag"
    below = int(legend.group(1))
    assert f"fewer than {below} kept crops" in legend.group(2)
    assert below < settings.export().report.thin_crops
    flagged = [
        name for name in library.partitions["facesets"] if re.search(
            rf'data-faceset="{name}" data-partition="facesets" data-flags="[^"]*thin', index
        )
    ]  # fmt: skip
    assert sorted(flagged) == sorted(
        n for n in library.partitions["facesets"] if library.kept[n] < below
    )
    assert len(flagged) < len(library.partitions["facesets"]) / 2
    assert "years 2001-2004" in index and "years 2005-2008" in index
    small = [n for n in library.partitions["facesets"] if "small" in library.dropped[n]]
    assert small, "the library export has no small drop"
    assert "small (face under 100px)" in _page(out, "facesets", small[0])


def _links(page: Path) -> list[str]:
    return re.findall(r'(?:href|src)="([^"#?]+)"', page.read_text())


def test_report_links_nothing_outside_its_export(
    export: Path, tmp_path: Path, module_services: dict[str, ServiceProcess]
) -> None:
    """Crop and .fsz names read from manifests someone edited (absolute, `..`) give a figure
    with neither image nor link: no page points the browser at a file outside the export."""
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not the export's")
    manifest_path = export / "faceset_000" / layout.FACESET_MANIFEST
    manifest = json.loads(manifest_path.read_text())
    kept = [c for c in manifest["crops"] if c["in_top"]]
    assert len(kept) >= 3
    kept[0]["file"] = str(outside)
    kept[1]["file"] = "../" * 6 + str(outside).lstrip("/")
    honest = kept[2]["file"]
    manifest["fsz_all"] = str(outside)
    manifest_path.write_text(json.dumps(manifest))
    top = json.loads((export / layout.EXPORT_MANIFEST).read_text())
    top["facesets"]["faceset_000"]["fsz_top"] = "../../outside.fsz"
    (export / layout.EXPORT_MANIFEST).write_text(json.dumps(top))

    ok(module_services, "report", str(export))

    pages = sorted((export / layout.REPORT_DIR).rglob("*.html"))
    assert pages
    root = export.resolve()
    checked = 0
    for page in pages:
        for link in _links(page):
            target = (page.parent / link).resolve()
            assert target.is_relative_to(root), f"{page.name} links to {link}"
            checked += 1
    assert checked > 0
    page = _page(export, "facesets", "faceset_000")
    assert page.count('class="top missing"><img loading=') == 2
    # The crops named honestly still show, each a thumbnail linking to its PNG.
    linked = re.findall(r'<figure class="top"><a href="([^"]+)"><img src="[^"]*thumbs/', page)
    assert len(linked) == len(kept) - 2
    assert any(link.endswith(honest) for link in linked)
    assert "outside" not in re.sub(r"title=\"[^\"]*\"", "", page)
