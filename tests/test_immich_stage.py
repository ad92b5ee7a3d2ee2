"""`facesets immich stage` against a fake Immich server on loopback, serving real LFW photos."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

import pytest
from conftest import lfw_people
from fake_immich import (
    LFW_FACE_BOX,
    LIBRARY_ID,
    PARTNER_ID,
    FakeAsset,
    FakeImmich,
    lfw_asset,
    lfw_library,
    scenery_asset,
)

from facesets.clustering.store import FaceStore, ImageData
from facesets.contract import layout
from facesets.orchestrator.immich.api import Face
from facesets.orchestrator.immich.cli import add_arguments, run
from facesets.orchestrator.immich.config import (
    EXIT_ASSET_ERRORS,
    EXIT_AUTH,
    EXIT_OK,
    EXIT_OUTAGE,
    StageConfig,
)
from facesets.orchestrator.immich.faces import biggest_face_short
from facesets.orchestrator.immich.paths import PARTIAL_DIR, is_excluded, library_relative_path
from facesets.orchestrator.immich.stage import stage
from services import run_facesets

KEY = "immich-test-key-7f3a9c1e5b"
USER = "alice"
PREVIEW = 160  # faces come in a 160 px preview space, so every LFW box must be scaled


@pytest.fixture(scope="module")
def photos(lfw_dir: Path) -> list[Path]:
    people = lfw_people(lfw_dir, people=12, per_person=2)
    return [photo for group in people.values() for photo in group]


def config(fake: FakeImmich, root: Path, **changes: object) -> StageConfig:
    values: dict[str, object] = {
        "url": fake.url,
        "api_key": KEY,
        "user": USER,
        "staging_root": root,
        "page_size": 4,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
        "state_save_interval_s": 0.05,
        "progress": False,
    }
    values.update(changes)
    return StageConfig(**values)  # type: ignore[arg-type]


def cli(monkeypatch: pytest.MonkeyPatch, url: str, key: str, root: Path, *extra: str) -> int:
    """The command exactly as a user runs it: environment, flags, exit code."""
    monkeypatch.setenv("IMMICH_URL", url)
    monkeypatch.setenv("IMMICH_API_KEY", key)
    parser = argparse.ArgumentParser(prog="facesets immich stage")
    add_arguments(parser)
    args = parser.parse_args(["--user", USER, "--staging-root", str(root), "--no-progress", *extra])
    return run(args)


def state_of(root: Path) -> dict[str, dict[str, object]]:
    return json.loads((root / USER / layout.IMMICH_STATE).read_text())["assets"]


def queue_of(root: Path) -> dict[str, object]:
    return json.loads((root / USER / layout.IMMICH_QUEUE).read_text())


def staged_file(root: Path, asset: FakeAsset) -> Path:
    relative = asset.original_path.split("/library/admin/", 1)[1]
    return root / USER / relative


# --- pure functions -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("/usr/src/app/upload/library/admin/2019/Ann/a.jpg", "2019/Ann/a.jpg"),
        ("/data/library/admin/2024/03/b.HEIC", "2024/03/b.HEIC"),
        ("/usr/src/app/upload/upload/uid-1/ab/cd/c.jpg", "ab/cd/c.jpg"),
        ("/data/upload/uid-1/ab/cd/c.jpg", "ab/cd/c.jpg"),
        ("/usr/src/app/upload/library/someone/x/d.jpg", "x/d.jpg"),
        ("/mnt/nas/photos/2019/e.jpg", "mnt/nas/photos/2019/e.jpg"),
        ("/data/library/admin/../../etc/passwd", "_/_/etc/passwd"),
        ("/data/library/admin/a:b|c?.jpg", "a_b_c_.jpg"),
        ("/data/library/admin/state.json", "_state.json"),
        ("/data/library/admin/CON.jpg", "_CON.jpg"),
        ("C:\\Users\\me\\Pictures\\f.jpg", "Users/me/Pictures/f.jpg"),
        ("/data/library/admin/caf\udce9.jpg", "caf_.jpg"),  # not UTF-8: it could not be sent
    ],
)
def test_library_relative_path_is_relative_and_safe(original: str, expected: str) -> None:
    relative = library_relative_path(original, labels=("admin", "uid-1"))
    assert relative == PurePosixPath(expected)
    assert not relative.is_absolute() and ".." not in relative.parts


def test_exclusion_globs_match_any_depth_case_insensitively() -> None:
    path = "/mnt/nas/Photos/@eaDir/IMG_1.JPG/SYNOPHOTO_THUMB_XL.jpg"
    relative = library_relative_path(path)
    assert is_excluded(relative, path, ["*/@eadir/*"])
    assert is_excluded(relative, path, ["*/photos/*"])
    assert not is_excluded(relative, path, ["*/screenshots/*", "*.png"])


def test_face_box_is_scaled_from_preview_to_original_pixels() -> None:
    # A 4000x3000 original, its 1920x1440 preview: a 100 px face there is 208 px in the original.
    face = Face("f", 100, 100, 200, 220, image_width=1920, image_height=1440, person_id=None)
    assert biggest_face_short([face], (4000, 3000)) == pytest.approx(100 * 4000 / 1920)
    assert biggest_face_short([face], (3000, 4000)) == pytest.approx(100 * 4000 / 1920)
    assert biggest_face_short([face], None) is None  # needs the original's size


# --- the stager against the fake server ----------------------------------------------------------
def test_happy_path_stages_big_faces_with_layout_queue_state_and_summary(
    photos: list[Path], tmp_path: Path
) -> None:
    big = lfw_library(photos[:12])
    small_original = lfw_asset(photos[12], index=12, scale=0.8)  # face 80 px in the original
    small_face_only = lfw_asset(photos[13], index=13, faces=[(10, 10, 50, 50)])
    two_faces = lfw_asset(photos[14], index=14, faces=[(10, 10, 50, 50), LFW_FACE_BOX])
    unsized_big = lfw_asset(photos[15], index=15, report_size=False)
    unsized_small = lfw_asset(photos[16], index=16, scale=0.8, report_size=False)
    scenery = scenery_asset("lake.jpg", index=17)
    video = FakeAsset(
        "/usr/src/app/upload/library/admin/2019/v.mp4", b"\0" * 64, 64, 64, type="VIDEO"
    )
    partner = lfw_asset(photos[17], index=18, owner_id=PARTNER_ID, prefix="/data/library/bob/2019")
    nas_thumb = lfw_asset(
        photos[18], index=19, prefix="/mnt/nas/photos/@eaDir", library_id=LIBRARY_ID
    )
    screenshot = lfw_asset(
        photos[19], index=20, prefix="/usr/src/app/upload/library/admin/Screenshots"
    )
    kept = [*big, two_faces, unsized_big]
    library = [
        *kept,
        small_original,
        small_face_only,
        unsized_small,
        scenery,
        video,
        partner,
        nas_thumb,
        screenshot,
    ]
    root = tmp_path / "staging"
    with FakeImmich(library, KEY, preview_size=PREVIEW) as fake:
        cfg = config(fake, root, excludes=("*/screenshots/*",))
        summary = stage(cfg)

        assert summary.exit_code == EXIT_OK
        assert (summary.seen, summary.staged, summary.errors) == (len(library) - 1, len(kept), 0)
        assert (summary.no_face, summary.no_big_face) == (1, 3)
        assert (summary.excluded, summary.partner) == (2, 1)
        assert (summary.duplicates, summary.in_store, summary.already_done) == (0, 0, 0)
        assert summary.staged_bytes == sum(len(a.data) for a in kept)

        for asset in kept:  # the served bytes, at the path below the library root
            assert staged_file(root, asset).read_bytes() == asset.data
        staged = sorted(p for p in (root / USER).rglob("*.jpg"))
        assert len(staged) == len(kept)
        assert not (root / USER / PARTIAL_DIR).exists()

        queue = queue_of(root)
        assert Path(queue["root"]) == (root / USER).resolve()
        assert {(i["asset_id"], i["sha256"]) for i in queue["items"]} == {
            (a.id, a.sha256) for a in kept
        }
        for item in queue["items"]:
            assert (root / USER / item["path"]).read_bytes() == fake.assets[item["asset_id"]].data

        state = state_of(root)
        assert state[unsized_big.id]["size_source"] == "decoded"
        assert state[big[0].id]["face_short"] == pytest.approx(100, abs=2)
        assert state[small_original.id]["reason"] == "no_big_face"
        assert state[small_original.id]["face_short"] == pytest.approx(80, abs=2)
        assert state[unsized_small.id]["reason"] == "no_big_face"
        assert state[scenery.id]["reason"] == "no_face"
        assert state[partner.id]["reason"] == "partner"
        assert state[nas_thumb.id]["reason"] == state[screenshot.id]["reason"] == "excluded"
        assert video.id not in state

        # Nothing asked twice; nothing downloaded that the metadata already ruled out.
        assert set(fake.faces_requests.values()) == {1}
        assert set(fake.original_requests.values()) == {1}
        assert set(fake.original_requests) == {a.id for a in [*kept, unsized_small]}
        assert fake.faces_requests.keys().isdisjoint({partner.id, nas_thumb.id, screenshot.id})

        # A re-run asks nothing about the assets already done.
        faces_before, originals_before = fake.requests["faces"], fake.requests["original"]
        again = stage(cfg)
        assert (again.staged, again.already_done, again.excluded) == (0, len(library) - 4, 2)
        assert (fake.requests["faces"], fake.requests["original"]) == (
            faces_before,
            originals_before,
        )

        # A lower threshold reopens exactly the 'no big face' decisions it changes.
        lower = stage(config(fake, root, excludes=("*/screenshots/*",), min_face_short=60))
        assert lower.staged == 2  # the two 200 px originals with an 80 px face
        assert staged_file(root, small_original).read_bytes() == small_original.data
        assert fake.faces_requests[small_original.id] == 2
        assert fake.faces_requests[small_face_only.id] == 2  # 40 px: still too small
        assert fake.faces_requests[big[0].id] == 1


@pytest.mark.parametrize("preview", [PREVIEW, 1440])
def test_face_filter_works_in_original_pixels_whatever_the_preview_size(
    photos: list[Path], tmp_path: Path, preview: int
) -> None:
    # LFW's face is 100 px: kept at 250 px, too small at 200 px. Read in a 160 px preview it
    # would be 64 px, so only the scaled box keeps the first; 1440 px equals the original.
    kept = lfw_asset(photos[0], index=0)
    shrunk = lfw_asset(photos[1], index=1, scale=0.8)
    grown = lfw_asset(photos[2], index=2, scale=2.0, faces=[(100, 100, 140, 150)])  # 40 -> 80
    with FakeImmich([kept, shrunk, grown], KEY, preview_size=preview) as fake:
        summary = stage(config(fake, tmp_path))
    assert (summary.staged, summary.no_big_face) == (1, 2)
    assert staged_file(tmp_path, kept).read_bytes() == kept.data
    state = state_of(tmp_path)
    assert state[grown.id]["face_short"] == pytest.approx(80, abs=3)
    assert set(fake.original_requests) == {kept.id}  # sizes known: nothing else downloaded


def test_no_face_on_a_recent_upload_is_asked_again_until_immich_has_looked(
    photos: list[Path], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    fresh = lfw_asset(photos[0], index=0, faces=[])  # uploaded an hour ago, not analysed yet
    fresh.uploaded = now - timedelta(hours=1)
    old = lfw_asset(photos[1], index=1, faces=[])  # uploaded long ago: no face is final
    old.uploaded = now - timedelta(days=30)
    with FakeImmich([fresh, old], KEY, preview_size=PREVIEW) as fake:
        first = stage(config(fake, tmp_path))
        assert (first.staged, first.no_face) == (0, 2)
        assert state_of(tmp_path)[fresh.id]["recheck"] is True
        assert "recheck" not in state_of(tmp_path)[old.id]

        fresh.faces = [LFW_FACE_BOX]  # Immich's face job has run since
        second = stage(config(fake, tmp_path))
        assert (second.staged, second.already_done) == (1, 1)
        assert staged_file(tmp_path, fresh).read_bytes() == fresh.data
        assert fake.faces_requests == {fresh.id: 2, old.id: 1}


def test_a_second_run_into_the_same_folder_is_refused(photos: list[Path], tmp_path: Path) -> None:
    from filelock import FileLock

    from facesets.shared.folder_lock import FolderBusyError

    asset = lfw_asset(photos[0], index=0)
    with FakeImmich([asset], KEY, preview_size=PREVIEW) as fake:
        cfg = config(fake, tmp_path)
        cfg.user_dir.mkdir(parents=True)
        held = FileLock(cfg.user_dir / layout.WRITER_LOCK)  # as a running stage holds it
        with held, pytest.raises(FolderBusyError, match="another facesets job"):
            stage(cfg)
        assert fake.requests["search"] == 0  # refused before asking Immich anything
        assert stage(cfg).staged == 1


def test_byte_identical_assets_are_staged_once(photos: list[Path], tmp_path: Path) -> None:
    first, second = lfw_asset(photos[0], index=10), lfw_asset(photos[1], index=9)
    # An upload of the same bytes (same Immich checksum): ruled out before any request.
    upload_copy = first.copy_as(
        "/usr/src/app/upload/library/admin/2020/copy.jpg", taken=first.taken.replace(year=2018)
    )
    # An external-library copy: Immich's checksum there hashes the path, so only SHA-256 tells.
    nas_copy = second.copy_as(
        "/mnt/nas/photos/2019/IMG_0002.jpg",
        library_id=LIBRARY_ID,
        taken=second.taken.replace(year=2018),
    )
    with FakeImmich([first, second, upload_copy, nas_copy], KEY, preview_size=PREVIEW) as fake:
        summary = stage(config(fake, tmp_path, workers=1))  # one worker: a fixed order
    assert (summary.staged, summary.duplicates) == (2, 2)
    state = state_of(tmp_path)
    assert (state[upload_copy.id]["duplicate_of"], state[upload_copy.id]["matched"]) == (
        first.id,
        "checksum",
    )
    assert (state[nas_copy.id]["duplicate_of"], state[nas_copy.id]["matched"]) == (
        second.id,
        "sha256",
    )
    assert (
        upload_copy.id not in fake.faces_requests and upload_copy.id not in fake.original_requests
    )
    assert fake.originals_served[nas_copy.id] == 1
    files = list((tmp_path / USER).rglob("*.jpg"))
    assert sorted(f.read_bytes() for f in files) == sorted([first.data, second.data])


def test_photos_the_face_store_holds_are_not_staged(photos: list[Path], tmp_path: Path) -> None:
    assets = lfw_library(photos[:6])
    store_path = tmp_path / "faces.db"
    store = FaceStore(store_path)
    try:
        store.add_images(
            [
                ImageData(sha256=a.sha256, path=f"/photos/{i}.jpg", size=len(a.data))
                for i, a in enumerate(assets[:2])
            ]
        )
        aliases = store.aliases()
        with FakeImmich(assets, KEY, preview_size=PREVIEW) as fake:
            summary = stage(config(fake, tmp_path / "staging"), known_content=store.known_content)
        assert (summary.staged, summary.in_store) == (4, 2)
        queued = {item["asset_id"] for item in queue_of(tmp_path / "staging")["items"]}
        assert queued == {a.id for a in assets[2:]}
        for asset in assets[:2]:
            assert not staged_file(tmp_path / "staging", asset).exists()
            assert state_of(tmp_path / "staging")[asset.id]["reason"] == "in_store"
        assert store.aliases() == aliases  # asking records nothing
    finally:
        store.close()


def test_intermittent_500_and_429_are_retried_honouring_retry_after(
    photos: list[Path], tmp_path: Path
) -> None:
    assets = lfw_library(photos[:10])
    with FakeImmich(assets, KEY, preview_size=PREVIEW) as fake:
        fake.faults.error_every = 5
        fake.faults.rate_limit_every = 11
        fake.faults.retry_after = "1"
        summary = stage(config(fake, tmp_path, retries=10, retry_after_max_s=5))
    assert (summary.staged, summary.errors, summary.exit_code) == (10, 0, EXIT_OK)
    assert fake.statuses[500] > 0 and fake.statuses[429] > 0
    for asset in assets:
        assert staged_file(tmp_path, asset).read_bytes() == asset.data
    # After a 429 the same request came back no sooner than its Retry-After said.
    for record in fake.log:
        if record.status == 429:
            retry = next(
                r
                for r in fake.log
                if r.ordinal > record.ordinal
                and (r.endpoint, r.asset_id) == (record.endpoint, record.asset_id)
            )
            assert retry.started - record.started >= 0.95


def test_truncated_download_is_detected_and_fetched_again(
    photos: list[Path], tmp_path: Path
) -> None:
    assets = lfw_library(photos[:3])
    with FakeImmich(assets, KEY, preview_size=PREVIEW) as fake:
        fake.faults.truncate[assets[1].id] = 2
        summary = stage(config(fake, tmp_path))
    assert (summary.staged, summary.errors) == (3, 0)
    assert fake.original_requests[assets[1].id] == 3
    assert fake.originals_served[assets[1].id] == 1
    assert staged_file(tmp_path, assets[1]).read_bytes() == assets[1].data
    assert state_of(tmp_path)[assets[1].id]["sha256"] == hashlib.sha256(assets[1].data).hexdigest()


def test_a_download_cut_on_every_attempt_is_an_error_that_the_next_run_retries(
    photos: list[Path], tmp_path: Path
) -> None:
    assets = lfw_library(photos[:2])
    with FakeImmich(assets, KEY, preview_size=PREVIEW) as fake:
        fake.faults.truncate[assets[0].id] = 3
        first = stage(config(fake, tmp_path, retries=2))
        assert (first.staged, first.errors, first.exit_code) == (1, 1, EXIT_ASSET_ERRORS)
        assert not staged_file(tmp_path, assets[0]).exists()
        assert state_of(tmp_path)[assets[0].id]["status"] == "error"
        second = stage(config(fake, tmp_path, retries=2))
    assert (second.staged, second.errors, second.already_done) == (1, 0, 1)
    assert staged_file(tmp_path, assets[0]).read_bytes() == assets[0].data


@pytest.mark.parametrize("mode", ["503", "refuse"])
def test_outage_stops_with_code_2_and_the_same_command_resumes(
    photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    assets = lfw_library(photos[:24])
    root = tmp_path / "staging"
    with FakeImmich(assets, KEY, preview_size=PREVIEW) as fake:
        fake.start_outage(after=30, mode=mode)
        assert cli(monkeypatch, fake.url, KEY, root) == EXIT_OUTAGE

        state = state_of(root)  # saved on the way out
        done = {asset_id for asset_id, record in state.items() if record["status"] == "staged"}
        assert 0 < len(done) < len(assets)
        for asset in assets:
            path = staged_file(root, asset)
            assert path.exists() == (asset.id in done)
            if path.exists():
                assert path.read_bytes() == asset.data
        assert not (root / USER / PARTIAL_DIR).exists()
        faces_before = dict(fake.faces_requests)

        fake.end_outage()
        assert cli(monkeypatch, fake.url, KEY, root) == EXIT_OK

    for asset in assets:
        assert staged_file(root, asset).read_bytes() == asset.data
        assert fake.originals_served[asset.id] == 1  # nothing fetched twice
    for asset_id in done:
        assert fake.faces_requests[asset_id] == faces_before[asset_id]
    assert len(queue_of(root)["items"]) == len(assets)


def test_wrong_api_key_is_a_clear_error_after_one_request(
    photos: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeImmich(lfw_library(photos[:3]), KEY) as fake:
        code = cli(monkeypatch, fake.url, "not-the-key", tmp_path)
    assert code == EXIT_AUTH
    assert sum(fake.requests.values()) <= 2
    assert fake.statuses[401] >= 1
    out = capsys.readouterr()
    assert "401" in out.out + out.err and "API key" in out.out + out.err
    assert state_of(tmp_path) == {}


def test_missing_environment_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("IMMICH_API_KEY", raising=False)
    monkeypatch.setenv("IMMICH_URL", "http://127.0.0.1:9")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--user", USER, "--staging-root", str(tmp_path)])) == EXIT_AUTH
    assert "IMMICH_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / USER).exists()


def test_store_flag_asks_the_clustering_service_what_the_store_holds(
    photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = lfw_library(photos[:4])
    store_path = tmp_path / "faces.db"
    store = FaceStore(store_path)
    store.add_images([ImageData(sha256=assets[0].sha256, path="/photos/a.jpg", size=1)])
    store.close()
    root = tmp_path / "staging"
    with FakeImmich(assets, KEY, preview_size=PREVIEW) as fake:
        # No --clustering: the command starts the clustering service itself.
        assert cli(monkeypatch, fake.url, KEY, root, "--store", str(store_path)) == EXIT_OK
    state = state_of(root)
    assert state[assets[0].id]["reason"] == "in_store"
    assert not staged_file(root, assets[0]).exists()
    assert all(state[a.id]["status"] == "staged" for a in assets[1:])


def test_api_key_is_in_no_file_and_no_log(
    photos: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log every request at DEBUG
    assets = lfw_library(photos[:6])
    root = tmp_path / "staging"
    with FakeImmich(assets, KEY, preview_size=PREVIEW) as fake:
        fake.faults.error_every = 6  # retries and their log lines too
        fake.faults.truncate[assets[2].id] = 1
        assert cli(monkeypatch, fake.url, KEY, root) == EXIT_OK
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == layout.IMMICH_STATE for p in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    out = capsys.readouterr()
    assert "immich.stage.done" in out.out + out.err + caplog.text  # logs were captured
    assert KEY not in out.out + out.err + caplog.text


def test_an_address_no_server_answers_says_to_check_it_not_to_resume(tmp_path: Path) -> None:
    """A typo'd IMMICH_URL: the command tells the user to check the address, not to run the
    same command again (it would fail the same way)."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env = {
        **os.environ,
        "IMMICH_URL": url,
        "IMMICH_API_KEY": KEY,
        "FACESETS_IMMICH__RETRIES": "1",  # the test's own wait: one retry, soon
        "FACESETS_IMMICH__BACKOFF_S": "0.05",
    }
    staging = tmp_path / "staging"
    args = ("stage", "--user", USER, "--staging-root", str(staging), "--no-progress")
    done = run_facesets("immich", *args, env=env, timeout=120)
    assert done.returncode == EXIT_OUTAGE, done.stderr[-2000:]
    assert f"no Immich server answered at {url}" in done.stdout and "IMMICH_URL" in done.stdout
    assert "resume" not in done.stdout
    assert not list(staging.rglob("*.jpg"))
