"""The review report at library scale: an export of 300+ facesets, loaded in headless Chromium."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np
import pytest
from PIL import Image
from report_export import LibraryExport, build_library_export, crop_png
from test_report import chromium, rendered_dom

from facesets.common import settings
from facesets.contract import layout
from facesets.export.report import ReportError, build_report, write_report
from facesets.export.report.model import page_name
from services import run_facesets

FIRST_SCREEN_LIMIT = 5_000_000
ROW = re.compile(r'<section class="card" data-faceset="([^"]+)"([^>]*)>')


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> LibraryExport:
    library = build_library_export(tmp_path_factory.mktemp("library"))
    write_report(library.out)
    return library


def rows(dom: str) -> list[tuple[str, dict[str, str]]]:
    """(name, attributes) of every faceset row of a rendered overview, in page order."""
    found = []
    for name, attrs in ROW.findall(dom):
        parsed = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        if re.search(r"\bhidden\b", attrs):
            parsed["hidden"] = "hidden"
        found.append((name, parsed))
    return found


def shown(dom: str) -> list[str]:
    return [name for name, attrs in rows(dom) if "hidden" not in attrs]


class CountingServer(http.server.ThreadingHTTPServer):
    """Serves a folder and records the bytes of every file it sends."""

    def __init__(self, root: Path) -> None:
        self.sent: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        handler = functools.partial(CountingHandler, directory=str(root))
        super().__init__(("127.0.0.1", 0), handler)


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    server: CountingServer

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        outputfile.write(data)
        with self.server.lock:
            self.server.sent.append((unquote(urlsplit(self.path).path), len(data)))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture()
def served(library: LibraryExport) -> Iterator[CountingServer]:
    server = CountingServer(library.out)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_overview_first_screen_is_light(
    library: LibraryExport, served: CountingServer, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{served.server_address[1]}/report/index.html"
    # Headless Chromium loads lazy images at once (complete screenshots); a desktop browser
    # defers them, which lazyLoadEnabled restores.
    dom = chromium(
        tmp_path / "profile",
        "--no-proxy-server",
        "--blink-settings=lazyLoadEnabled=true",
        "--window-size=1280,1000",
        "--dump-dom",
        url,
    ).stdout
    assert len(rows(dom)) == len(library.names())
    sent = dict(served.sent)
    total = sum(sent.values())
    thumbs = [p for p in sent if f"/{layout.REPORT_THUMBS_DIR}/" in p]
    overview_images = len(re.findall(r"<img ", dom))
    assert "/report/index.html" in sent
    assert 0 < len(thumbs) < overview_images / 4, "lazy loading: only the first rows' images"
    assert not [p for p in sent if p.endswith(".png")], "the first screen fetched full crops"
    assert total < FIRST_SCREEN_LIMIT, total
    # The check can fail: the best crops, which the report used to show in full, weigh more.
    top_crops = [
        library.out / crop["file"]
        for name in library.names()
        for crop in json.loads((library.out / entry_manifest(library, name)).read_text())["crops"]
        if crop["in_top"]
    ]
    assert sum(p.stat().st_size for p in top_crops) > FIRST_SCREEN_LIMIT


def entry_manifest(library: LibraryExport, name: str) -> str:
    top = json.loads((library.out / layout.EXPORT_MANIFEST).read_text())
    for key in library.partitions:
        if name in top[key]:
            return str(top[key][name]["manifest"])
    raise KeyError(name)


def partition_of(library: LibraryExport, name: str) -> str:
    return next(k for k, names in library.partitions.items() if name in names)


def test_every_faceset_is_reachable_from_the_overview(
    library: LibraryExport, tmp_path: Path
) -> None:
    index = library.out / layout.REPORT_DIR / layout.REPORT_INDEX
    dom = rendered_dom(tmp_path / "profile", index)
    assert sorted(name for name, _ in rows(dom)) == sorted(library.names())
    assert len(library.partitions["facesets"]) >= 300
    links = set(re.findall(r'<h3 class="find"><a href="([^"]+)">', dom))
    for name in library.names():
        partition = partition_of(library, name)
        page = page_name(partition, name)
        assert quote(page) in links, name
        text = (index.parent / page).read_text(encoding="utf-8")
        assert f'<h1 data-faceset="{name}">' in text
    # Each partition the manifest holds is listed with its size, and so are the other sections.
    for key, names in library.partitions.items():
        assert re.search(rf'<li data-partition="{key}"><a [^>]+>[^<]+</a>: {len(names)}</li>', dom)
    assert 'data-partition="candidates"><a href="candidates.html">Candidates</a>: ' in dom
    assert 'href="lookalikes.html">Look-alike pairs</a>: 2' in dom
    flags = {name: attrs["data-flags"].split() for name, attrs in rows(dom)}
    assert all("masked" in flags[n] for n in library.partitions["masked"])
    assert all("merged" in flags[n] for n in library.partitions["merged"])
    assert all("thin" in flags[n] for n in library.partitions["thin_eras"])
    assert {n for n, f in flags.items() if "look-alike" in f} == {
        n for pair in library.lookalikes for n in pair
    }


def test_filter_finds_a_faceset_by_source_folder(library: LibraryExport, tmp_path: Path) -> None:
    index = (library.out / layout.REPORT_DIR / layout.REPORT_INDEX).as_uri()
    profile = tmp_path / "profile"
    dom = chromium(profile, "--dump-dom", index + "#q=" + quote("lisbon 2013 (ana")).stdout
    assert shown(dom) == ["faceset_137"]
    assert 'data-shown="1"' in dom
    dom = chromium(profile, "--dump-dom", index + "#q=" + quote("Trips/person 02")).stdout
    expected = sorted(
        n for n, s in library.sources.items() if any("Trips/person 02" in x for x in s)
    )
    assert sorted(shown(dom)) == expected and len(expected) > 1

    dom = chromium(profile, "--dump-dom", index + "#flag=masked").stdout
    assert sorted(shown(dom)) == sorted(library.partitions["masked"])

    dom = chromium(profile, "--dump-dom", index + "#part=eras&sort=size").stdout
    listed = [(name, attrs) for name, attrs in rows(dom) if "hidden" not in attrs]
    assert [n for n, _ in listed] and {n for n, _ in listed} == set(library.partitions["eras"])
    sizes = [int(attrs["data-size"]) for _, attrs in listed]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]

    dom = chromium(profile, "--dump-dom", index + "#sort=quality-asc").stdout
    qualities = [float(attrs["data-quality"]) for _, attrs in rows(dom)]
    assert qualities == sorted(qualities) and len(shown(dom)) == len(library.names())


def test_faceset_page_shows_its_crops_and_dropped_faces(
    library: LibraryExport, tmp_path: Path, artifacts_dir: Path
) -> None:
    name = next(n for n in library.partitions["facesets"] if len(set(library.dropped[n])) >= 2)
    page = library.out / layout.REPORT_DIR / page_name("facesets", name)
    dom = rendered_dom(tmp_path / "profile", page)
    crops = re.search(r'data-section="crops">(.*?)</section>', dom, re.S)
    assert crops is not None
    assert len(re.findall(r"<img ", crops.group(1))) == library.kept[name]
    assert f"/{layout.REPORT_THUMBS_DIR}/" in crops.group(1)
    dropped = re.search(r'data-section="dropped">(.*?)</section>', dom, re.S)
    assert dropped is not None
    assert f"dropped faces: {len(library.dropped[name])}" in dropped.group(1)
    for reason in set(library.dropped[name]):
        count = library.dropped[name].count(reason)
        assert f'<h3 class="reason">{reason}: {count}</h3>' in dropped.group(1)
    with_thumbs = sum(1 for r in library.dropped[name] if r != "unreadable")
    assert len(re.findall(r"<img ", dropped.group(1))) == with_thumbs
    assert re.search(r'href="[^"]+_top6\.fsz"', dom) and re.search(r'href="[^"]+_all\.fsz"', dom)
    assert 'data-images="ok"' in dom

    overview = library.out / layout.REPORT_DIR / layout.REPORT_INDEX
    for shot_name, target, size in (
        ("report_overview.png", overview.as_uri(), "1280,1000"),
        ("report_faceset.png", page.as_uri(), "1280,1400"),
    ):
        shot = artifacts_dir / shot_name
        shot.unlink(missing_ok=True)
        chromium(tmp_path / "profile", f"--screenshot={shot}", f"--window-size={size}", target)
        with Image.open(shot) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
        assert pixels.std() > 20, f"{shot_name} is blank"


# --- the thumbnail cache and the rewrite, on a small export -----------------------------------


@pytest.fixture()
def small(tmp_path: Path) -> LibraryExport:
    return build_library_export(
        tmp_path / "export", facesets=4, eras=1, thin_eras=1, masked=0, merged=0, candidates=3
    )


def thumb_files(out: Path) -> dict[str, int]:
    folder = out / layout.REPORT_DIR / layout.REPORT_THUMBS_DIR
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.jpg")}


def test_thumbnails_are_made_once_and_remade_when_the_crop_changes(small: LibraryExport) -> None:
    first = build_report(small.out).summary
    files = thumb_files(small.out)
    assert first["thumbnails_made"] == first["thumbnails"] == len(files) > 0
    for name in list(files)[:3]:
        with Image.open(small.out / layout.REPORT_DIR / layout.REPORT_THUMBS_DIR / name) as image:
            assert image.format == "JPEG"
            assert max(image.size) == settings.export().report.thumb_size

    again = build_report(small.out).summary
    assert again["thumbnails_made"] == 0 and again["report_pages_changed"] == 0
    assert thumb_files(small.out) == files

    manifest = json.loads((small.out / entry_manifest(small, "faceset_002")).read_text())
    crop = small.out / manifest["crops"][0]["file"]
    crop.write_bytes(crop_png(424242))
    changed = build_report(small.out).summary
    assert changed["thumbnails_made"] == 1 and changed["thumbnails_removed"] == 1
    after = thumb_files(small.out)
    assert len(after) == len(files) and len(set(after) - set(files)) == 1


def test_report_rewrite_is_atomic_and_removes_what_it_no_longer_shows(
    small: LibraryExport, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = write_report(small.out)
    report_dir = index.parent
    before = index.read_bytes()
    gone = report_dir / page_name("facesets", "faceset_003")
    assert gone.is_file()

    top_path = small.out / layout.EXPORT_MANIFEST
    top = json.loads(top_path.read_text())
    del top["facesets"]["faceset_003"]
    top_path.write_text(json.dumps(top))

    # A failure while the overview is written (a full disk) leaves the old one whole.
    real_replace = os.replace

    def failing(source: str, target: str, **dir_fds: int) -> None:
        if Path(target).name == layout.REPORT_INDEX:
            raise OSError(28, "No space left on device")
        real_replace(source, target, **dir_fds)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        write_report(small.out)
    assert index.read_bytes() == before
    assert not list(report_dir.rglob("*.tmp"))

    monkeypatch.setattr(os, "replace", real_replace)
    summary = build_report(small.out).summary
    assert not gone.exists() and summary["report_pages_removed"] == 1
    assert 'data-faceset="faceset_003"' not in index.read_text()
    # Thumbnails of the removed faceset's crops go too.
    assert len(thumb_files(small.out)) == summary["thumbnails"]


def test_report_confines_images_to_the_export(small: LibraryExport, tmp_path: Path) -> None:
    secret = small.out.parent / "outside.png"
    secret.write_bytes(crop_png(1))
    path = small.out / entry_manifest(small, "faceset_001")
    manifest = json.loads(path.read_text())
    manifest["crops"][0]["file"] = "../outside.png"
    path.write_text(json.dumps(manifest))
    summary = build_report(small.out).summary
    assert summary["images_missing"] == 1


def test_overview_shows_the_manifest_explanation_with_no_facesets(tmp_path: Path) -> None:
    layout.atomic_write_json(
        tmp_path / layout.EXPORT_MANIFEST,
        {"version": 1, "facesets": {}, "explanation": {"size": "12 faces under 100 px"}},
    )
    text = write_report(tmp_path).read_text()
    assert 'data-section="explanation"' in text and "12 faces under 100 px" in text
    assert "no facesets" in text


def test_report_command_rebuilds_the_report_alone(small: LibraryExport, tmp_path: Path) -> None:
    shutil.rmtree(small.out / layout.REPORT_DIR, ignore_errors=True)
    result = run_facesets("report", str(small.out), "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["report"] == str(small.out / layout.REPORT_DIR / layout.REPORT_INDEX)
    assert summary["report_entries"] == len(small.names())
    assert Path(summary["report"]).is_file()

    empty = tmp_path / "not-an-export"
    empty.mkdir()
    failed = run_facesets("report", str(empty), timeout=300)
    assert failed.returncode == 1 and "no export manifest" in failed.stderr
    assert not (empty / layout.REPORT_DIR).exists()
    with pytest.raises(ReportError):
        write_report(empty)
