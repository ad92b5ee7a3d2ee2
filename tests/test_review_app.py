"""`facesets review`: the web app over a real export of an LFW slice, driven in Chromium
(Playwright, the system browser): reject, undo, merge, split, name, mark different (and a
refine that keeps the pair apart), two tabs at once, CSRF and --listen refusals.

After each action the export's manifests, its .fsz files (every member one of the PNGs
export-swap checked to hold one face) and the static report agree, and every .fsz the action
rewrote holds exactly the PNGs its faceset's manifest lists, in each of which the real
detector (the inference service's CountFaces, through the client library) finds one face;
`facesets restore` brings back every byte."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port
from filelock import FileLock
from review_export import ReviewApp, build_lfw_export

from facesets.client import Endpoint, ImageInput, InferenceClient
from facesets.contract import layout
from services import ServiceProcess, run_facesets

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no system Chromium")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path, model_root: Path) -> dict:
    return build_lfw_export(tmp_path_factory.mktemp("review"), lfw_dir, model_root)


class FaceCounter:
    """The inference service of the module, started while the export is built: it counts the
    faces in .fsz members (the first count waits for it to serve)."""

    def __init__(self, log_path: Path) -> None:
        self.service = ServiceProcess("inference", free_port(), log_path).start(wait=False)
        self.client: InferenceClient | None = None

    def count(self, pngs: list[bytes]) -> list[int]:
        if self.client is None:
            self.service.wait_serving()
            self.client = InferenceClient(Endpoint(self.service.address))
        counts = [-1] * len(pngs)
        images = (ImageInput(id=str(i), data=data) for i, data in enumerate(pngs))
        for result in self.client.count_faces_stream(images):
            assert not result.HasField("error"), result.error.message
            counts[int(result.id)] = result.count
        return counts

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.service.stop()


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaceCounter]:
    counter = FaceCounter(tmp_path_factory.mktemp("inference") / "inference.log")
    yield counter
    counter.stop()


@pytest.fixture
def library(built: dict, tmp_path: Path) -> dict:
    """A copy of the export with its store beside it (as `facesets run` lays them out)."""
    export = tmp_path / "run" / "export"
    shutil.copytree(built["export"], export)
    shutil.copy(built["store"], tmp_path / "run" / "faces.db")
    return built | {"export": export, "store": tmp_path / "run" / "faces.db"}


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def manifest(export: Path) -> dict:
    return json.loads((export / layout.EXPORT_MANIFEST).read_text())


def inner(export: Path, name: str) -> dict:
    return json.loads((export / name / layout.FACESET_MANIFEST).read_text())


def pngs_of(export: Path, name: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((export / name / "faces").glob("*.png"))}


def snapshot(export: Path) -> dict[str, str]:
    """Every PNG and .fsz under the export, by path, as hashes."""
    return {
        p.relative_to(export).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(export.rglob("*"))
        if p.suffix in {".png", ".fsz"} and "report" not in p.relative_to(export).parts[:1]
    }


def assert_agree(export: Path, one_face: set[bytes]) -> None:
    """Manifests, folders, .fsz bundles and the report say the same of every faceset."""
    top = manifest(export)
    report = (export / layout.REPORT_DIR / layout.REPORT_INDEX).read_text()
    for name, entry in top["facesets"].items():
        record = inner(export, entry["dir"])
        files = {Path(c["file"]).name for c in record["crops"]}
        held = pngs_of(export, entry["dir"])
        assert files == set(held), name
        assert entry["counts"]["kept"] == len(held), name
        for key in ("fsz_top", "fsz_all"):
            assert entry[key] == record[key] and (export / record[key]).is_file(), (name, key)
        with zipfile.ZipFile(export / record["fsz_all"]) as bundle:
            members = [bundle.read(n) for n in bundle.namelist()]
        assert sorted(members) == sorted(held.values()), name
        assert set(members) <= one_face, f"{name}: a member export-swap never checked"
        assert f'data-faceset="{name}"' in report, name
        others = {p.name for p in (export / entry["dir"]).glob("*.fsz")}
        assert others == {Path(record["fsz_top"]).name, Path(record["fsz_all"]).name}, name


def bundles(export: Path) -> dict[str, str]:
    """Every .fsz of the export's facesets, by path, as hashes."""
    return {p: h for p, h in snapshot(export).items() if p.endswith(".fsz")}


def assert_bundles_hold_one_face_each(
    export: Path, faces: FaceCounter, held: dict[str, str], touched: set[str]
) -> dict[str, str]:
    """The .fsz files the action rewrote (new or changed since `held`) lie in the facesets
    `touched` names and hold exactly the PNGs their faceset's manifest lists (all of them, or
    its top N), and the detector finds one face in each member. Returns the bundles now."""
    now = bundles(export)
    rewritten = {p for p, h in now.items() if held.get(p) != h}
    assert {p.split("/")[0] for p in rewritten} == touched, sorted(rewritten)
    live = {e["dir"]: e for e in manifest(export)["facesets"].values()}
    members: dict[bytes, str] = {}
    for rel in sorted(rewritten):
        folder = rel.split("/")[0]
        assert folder in live, f"{rel}: a bundle of no faceset"
        record = inner(export, folder)
        listed = [(export / c["file"]).read_bytes() for c in record["crops"]]
        with zipfile.ZipFile(export / rel) as bundle:
            held_now = {n: bundle.read(n) for n in bundle.namelist()}
        for name, data in held_now.items():
            assert name.endswith(".png") and hashlib.sha256(data).hexdigest()[:10] in name, rel
            members.setdefault(data, f"{rel}:{name}")
        if rel == record["fsz_all"]:
            assert sorted(held_now.values()) == sorted(listed), rel
        else:
            assert rel == record["fsz_top"], rel
            top_n = int(record.get("params", {}).get("top_n") or 0) or len(listed)
            assert len(held_now) == min(top_n, len(listed)), rel
            assert set(held_now.values()) <= set(listed), rel
    assert members, "no bundle to check"
    counts = dict(zip(members.values(), faces.count(list(members)), strict=True))
    assert all(c == 1 for c in counts.values()), {m: c for m, c in counts.items() if c != 1}
    return now


def clear(page: Any) -> None:
    """Empty the message line, so that flash() waits for the next action's message."""
    page.evaluate("document.querySelector('#flash').textContent = ''")


def flash(page: Any) -> str:
    page.wait_for_selector("#flash:not(:empty)", timeout=60_000)
    return str(page.inner_text("#flash"))


def refine_groups(store: Path, out: Path) -> list[set[int]]:
    done = run_facesets(
        "refine",
        str(store),
        str(out),
        "--allow-same-photo",
        "--merge-threshold",
        "1.95",
        "--outlier-threshold",
        "2.0",
        "--min-faces",
        "1",
        "--min-short",
        "0",
        "--min-blur",
        "0",
        "--min-det-score",
        "0",
        "--json",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads((out / layout.REFINE_MANIFEST).read_text())
    return [set(f["face_ids"]) for f in plan["facesets"]]


def test_review_in_the_browser(
    faces: FaceCounter, library: dict, browser: Any, artifacts_dir: Path
) -> None:
    export, store = library["export"], library["store"]
    one_face = {p.read_bytes() for p in export.rglob("faces/*.png")}
    before = snapshot(export)
    held = bundles(export)
    ids = {
        n: {c["face_id"] for c in inner(export, n)["crops"]} for n in ("faceset_000", "faceset_001")
    }
    # Without the mark, a refine that merges freely puts the two people in one faceset.
    assert any(
        ids["faceset_000"] & g and ids["faceset_001"] & g
        for g in refine_groups(store, library["root"] / "r0")
    )

    app = ReviewApp(export)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app.url)
        assert page.locator("section.card").count() == 3
        page.screenshot(path=str(artifacts_dir / "review_overview.png"), full_page=True)
        page.fill("input[name=q]", "faceset_002")
        page.click("form.filters button")
        assert page.locator("section.card").count() == 1

        # Mark the look-alike pair as different people; a refine keeps them apart.
        page.goto(app.base + "/lookalikes")
        clear(page)
        page.click("button[data-action=different]")
        assert "done" in flash(page)
        assert page.locator("section.pair").count() == 0
        assert manifest(export)["lookalikes"] == []
        links = json.loads(Path(str(store) + layout.CANNOT_LINK_SUFFIX).read_text())
        assert list(links["exports"]) == [str(export)]
        assert bundles(export) == held  # a mark rewrites no bundle
        for group in refine_groups(store, library["root"] / "r1"):
            assert not (ids["faceset_000"] & group and ids["faceset_001"] & group)

        # Reject a range of crops (click, shift-click), then undo.
        page.goto(app.base + "/faceset/faceset_000")
        crops = page.locator("#crops .crop")
        names = [crops.nth(i).get_attribute("data-crop") for i in range(crops.count())]
        crops.nth(0).click()
        crops.nth(2).click(modifiers=["Shift"])
        assert page.inner_text("#selected-count") == "3 selected"
        page.screenshot(path=str(artifacts_dir / "review_faceset.png"), full_page=True)
        crops.nth(1).click()  # a plain click toggles one off again
        clear(page)
        page.keyboard.press("r")
        assert "reject: done" in flash(page)
        gone = {names[0], names[2]}
        assert gone.isdisjoint(pngs_of(export, "faceset_000"))
        assert {d["reason"] for d in inner(export, "faceset_000")["dropped"]} == {"rejected"}
        assert all((export / "faceset_000/faces/_dropped" / n).is_file() for n in gone)
        assert_agree(export, one_face)
        held = assert_bundles_hold_one_face_each(export, faces, held, {"faceset_000"})
        clear(page)
        page.click("#undo")
        assert "put back" in flash(page)
        assert snapshot(export) == before
        assert_agree(export, one_face)
        held = assert_bundles_hold_one_face_each(export, faces, held, {"faceset_000"})

        # Merge faceset_002 into faceset_000, then split that person out again.
        page.goto(app.base + "/faceset/faceset_002")
        page.select_option("#merge-into", "faceset_000")
        clear(page)
        page.click("button[data-action=merge]")
        page.wait_for_url("**/faceset/faceset_000")
        assert "merge: done" in flash(page)
        assert manifest(export)["merged"]["faceset_002"]["into"] == "faceset_000"
        assert_agree(export, one_face)
        held = assert_bundles_hold_one_face_each(export, faces, held, {"faceset_000"})
        third = library["people"][2]
        crops = page.locator("#crops .crop")
        for i in range(crops.count()):
            if third in (crops.nth(i).get_attribute("data-crop") or ""):
                crops.nth(i).click()
        clear(page)
        page.click("button[data-action=split]")
        assert "split: done" in flash(page)
        split = manifest(export)["facesets"]["faceset_003"]
        assert split["counts"]["kept"] == 5
        assert all(third in n for n in pngs_of(export, "faceset_003"))
        assert not any(third in n for n in pngs_of(export, "faceset_000"))
        assert_agree(export, one_face)
        touched = {"faceset_000", "faceset_003"}
        held = assert_bundles_hold_one_face_each(export, faces, held, touched)

        # Name a faceset: manifests, report and .fsz file names.
        page.goto(app.base + "/faceset/faceset_001")
        page.fill("#person-name", "Jane Q. Doe")
        clear(page)
        page.click("button[data-action=name]")
        assert "name: done" in flash(page)
        assert page.locator("h1").inner_text().startswith("Jane Q. Doe")
        assert manifest(export)["facesets"]["faceset_001"]["label"] == "Jane Q. Doe"
        assert {p.name for p in (export / "faceset_001").glob("*.fsz")} == {
            "Jane_Q._Doe_all.fsz",
            "Jane_Q._Doe_top30.fsz",
        }
        assert "Jane Q. Doe" in (export / "report" / "index.html").read_text()
        assert_agree(export, one_face)
        held = assert_bundles_hold_one_face_each(export, faces, held, {"faceset_001"})

        page.goto(app.base + "/history")
        kinds = [
            k.inner_text() for k in page.locator("table.history tbody tr td:nth-child(2)").all()
        ]
        assert kinds[:4] == ["name", "split", "merge", "reject"]
        page.close()
    finally:
        app.stop()

    # Every run is a maintenance run `facesets restore` puts back: every byte returns.
    runs = [
        r
        for r in manifest(export)[layout.MAINTENANCE_RUNS]
        if not all(m["restored"] for m in r["moves"])
    ]
    for run in reversed(runs):
        done = run_facesets("restore", str(export), "--run", run["id"], "--json")
        assert done.returncode == 0, done.stderr[-3000:]
    assert snapshot(export) == before
    assert not (export / "faceset_003").exists()
    assert len(manifest(export)["lookalikes"]) == 1
    assert json.loads(Path(str(store) + layout.CANNOT_LINK_SUFFIX).read_text())["exports"] == {}


def test_two_tabs_csrf_and_stale_views(library: dict, browser: Any) -> None:
    export = library["export"]
    app = ReviewApp(export)
    try:
        first, second = browser.new_context(), browser.new_context()
        a, b = first.new_page(), second.new_page()
        for page in (a, b):
            page.goto(app.base + "/faceset/faceset_000")
        names = [a.locator("#crops .crop").nth(i).get_attribute("data-crop") for i in range(2)]

        # While another job writes the export, an action is refused and nothing changes.
        held = snapshot(export)
        lock = FileLock(str(export / layout.WRITER_LOCK), timeout=0)
        with lock:
            a.locator("#crops .crop").nth(0).click()
            clear(a)
            a.click("button[data-action=reject]")
            assert "another action on this export is running" in flash(a)
        assert snapshot(export) == held

        # Two tabs at once: each action is done or refused with that message, none is lost.
        b.locator("#crops .crop").nth(1).click()
        for page in (a, b):
            page.evaluate("document.querySelector('#flash').textContent = ''")
        a.evaluate("document.querySelector('button[data-action=reject]').click()")
        b.evaluate("document.querySelector('button[data-action=reject]').click()")
        said = [flash(a), flash(b)]
        done = [s for s in said if "reject: done" in s]
        assert done and all(s in done or "another action" in s for s in said), said
        rejected = [r for r in manifest(export)[layout.MAINTENANCE_RUNS] if r["kind"] == "reject"]
        assert len(rejected) == len(done)
        left = pngs_of(export, "faceset_000")
        assert sum(n not in left for n in names) == len(done)

        # A stale tab acting on a crop that is gone gets a clear refusal.
        b.goto(app.base + "/faceset/faceset_000")
        a.goto(app.base + "/faceset/faceset_000")
        stale = b.locator("#crops .crop").nth(0).get_attribute("data-crop")
        a.locator("#crops .crop").nth(0).click()
        clear(a)
        a.click("button[data-action=reject]")
        assert "reject: done" in flash(a)
        b.locator("#crops .crop").nth(0).click()
        clear(b)
        b.click("button[data-action=reject]")
        assert f"{stale!r} is not a crop of faceset_000" in flash(b)

        # Cross-site and tokenless POSTs are refused before any action.
        token = a.get_attribute('meta[name="csrf-token"]', "content")
        body = {"faceset": "faceset_000", "crops": [n for n in pngs_of(export, "faceset_000")][:1]}
        for headers in (
            {"Origin": app.base},
            {"Origin": "http://evil.example", "X-CSRF-Token": token},
            {"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site", "Origin": app.base},
        ):
            answer = first.request.post(app.base + "/api/reject", data=body, headers=headers)
            assert answer.status == 403, headers
        answer = httpx.post(
            app.base + "/api/reject",
            json=body,
            headers={
                "Host": "evil.example:80",
                "Origin": "http://evil.example:80",
                "X-CSRF-Token": token,
            },
        )
        assert answer.status_code == 421
        assert httpx.get(app.base + "/img/faceset_000/manifest.json").status_code == 404
        assert httpx.get(app.base + "/img/../faces.db").status_code == 404
        first.close()
        second.close()
    finally:
        app.stop()


def test_listen_beyond_loopback_needs_the_token(library: dict, tmp_path: Path) -> None:
    export = library["export"]
    refused = run_facesets("review", str(export), "--no-browser", "--listen", "0.0.0.0:0")
    assert refused.returncode != 0 and "without a token" in refused.stderr, refused.stderr[-2000:]
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-review-token\n")
    app = ReviewApp(export, "--listen", "0.0.0.0:0", "--token-file", str(token_file))
    try:
        assert httpx.get(app.base + "/").status_code == 401
        with httpx.Client(follow_redirects=True) as client:
            assert client.get(app.url).status_code == 200  # ?token=… sets the cookie
            assert client.get(app.base + "/faceset/faceset_000").status_code == 200
        bearer = {"Authorization": "Bearer s3cret-review-token"}
        assert httpx.get(app.base + "/", headers=bearer).status_code == 200
    finally:
        app.stop()


def test_a_fifo_planted_under_a_thumbnails_name_holds_no_page(library: dict) -> None:
    """Every cached thumbnail replaced by a FIFO of its name while the app serves (a second
    user of a shared export can plant them): the app answers with the crops themselves, and no
    request waits on a pipe."""
    export = library["export"]
    thumbs = export / layout.REPORT_DIR / layout.REPORT_THUMBS_DIR
    crop = next(iter(inner(export, "faceset_000")["crops"]))["file"]
    app = ReviewApp(export)
    try:
        with httpx.Client(follow_redirects=True, timeout=20) as client:
            assert client.get(app.url).status_code == 200
            cached = client.get(f"{app.base}/img/{crop}")
            assert cached.status_code == 200 and cached.headers["content-type"] == "image/jpeg"
            planted = sorted(thumbs.glob("*.jpg"))
            assert planted
            for thumb in planted:
                thumb.unlink()
                os.mkfifo(thumb)
            answer = client.get(f"{app.base}/img/{crop}")
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
            assert answer.content == (export / crop).read_bytes()
            assert client.get(app.base + "/faceset/faceset_000").status_code == 200
    finally:
        app.stop()
    assert all(stat.S_ISFIFO(os.lstat(thumb).st_mode) for thumb in planted)  # left as found
