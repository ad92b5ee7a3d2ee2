"""`facesets video`: plan, cut, status and resume on videos built from LFW stills whose shots
and faces are known (tests/videos.py), through real export/media and inference services."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import free_port
from videos import FPS, ShotSpec, make_audio_only, make_video

from facesets.client import Endpoint, ExportClient
from facesets.contract import layout
from services import FACESETS, ServiceProcess, run_facesets, wait_for

SAMPLE_S = 0.5  # one sampled frame at the default 2 fps


@pytest.fixture(scope="module")
def people(lfw_dir: Path) -> dict[str, list[Path]]:
    names = ["Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody"]
    return {name: sorted((lfw_dir / name).glob("*.jpg")) for name in names}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]) -> dict:
    """SRC with the main video, a no-face video and the bad inputs."""
    a, b, c = (people[n] for n in ("Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody"))
    src = tmp_path_factory.mktemp("src")
    shots = [
        ShotSpec(3, (40, 40, 160), a[0], motion="zoom"),  # A
        ShotSpec(2, (160, 60, 40), None),  # no face
        ShotSpec(3, (40, 160, 60), b[0], motion="pan"),  # B
        ShotSpec(2, (150, 150, 150), a[1], face_size=70),  # A, too small for the gate
        ShotSpec(4, (30, 100, 200), b[1], then=c[0], motion="pan"),  # B, then C mid-shot
    ]
    # Keyframes every 4 s and none at cuts: stream copy has to start before most segments.
    cuts = make_video(src / "main.mp4", shots, keyframe_s=4, keyframes_at_cuts=False)
    make_video(src / "sub" / "empty_room.mp4", [ShotSpec(2, (90, 90, 90), None)])
    (src / "zero.mp4").write_bytes(b"")
    whole = (src / "main.mp4").read_bytes()
    (src / "truncated.mkv").write_bytes(whole[: len(whole) // 2])  # mp4 index is at the end
    make_audio_only(src / "sound.mp4")
    # Index first: it opens, and the stream ends half-way through its frames.
    make_video(src / "cut_short.mp4", [ShotSpec(6, (90, 40, 90), None)], index_first=True)
    whole = (src / "cut_short.mp4").read_bytes()
    (src / "cut_short.mp4").write_bytes(whole[: len(whole) // 2])
    # Links out of SRC and out of the --match folder lead to files the plan never reads: a
    # video, another person's photo; a FIFO named like an image is not waited on.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(src / "sub" / "empty_room.mp4", elsewhere / "private.mp4")
    (src / "private.mp4").symlink_to(elsewhere / "private.mp4")
    # The OUT of an earlier plan kept among the videos (it holds the writer lock): its clips
    # are not new videos.
    (src / "clips_2024").mkdir()
    (src / "clips_2024" / layout.WRITER_LOCK).touch()
    shutil.copy(src / "sub" / "empty_room.mp4", src / "clips_2024" / "empty_room_s000.mp4")
    # A name in Latin-1 (an old disk, a zip): reported, not read (OpenCV crashed the service).
    shutil.copy(src / "sub" / "empty_room.mp4", os.fsencode(src) + b"/caf\xe9.mp4")
    shutil.copy(b[2], elsewhere / "b.jpg")
    match_dir = tmp_path_factory.mktemp("faceset_a")
    for photo in a[2:6]:  # other photos of A than those in the video
        shutil.copy(photo, match_dir / photo.name)
    (match_dir / "other.jpg").symlink_to(elsewhere / "b.jpg")
    os.mkfifo(match_dir / "pipe.png")
    return {"src": src, "cuts": cuts, "shots": shots, "match_dir": match_dir}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("logs")
    inference = ServiceProcess("inference", free_port(), logs / "inference.log").start()
    export = ServiceProcess(
        "export", free_port(), logs / "export.log", "--inference", inference.address
    ).start()
    yield {"inference": inference, "export": export}
    export.stop()
    inference.stop()


def video(media: dict, *args: str, timeout: float = 120) -> dict:
    done = run_facesets(
        "video", *args, "--json",
        "--export", media["export"].address, "--inference", media["inference"].address,
        timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ffprobe_duration(clip: Path) -> float:
    """Decodes every frame: a clip that does not decode fails here."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames:format=duration", "-of", "json", str(clip)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    facts = json.loads(out.stdout)
    assert int(facts["streams"][0]["nb_read_frames"]) > 0
    return float(facts["format"]["duration"])


def keyframe_times(path: Path) -> list[float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-skip_frame", "nokey",
         "-show_entries", "frame=pts_time", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [float(v.strip(",")) for v in out.stdout.split() if v.strip(",")]


@pytest.fixture(scope="module")
def planned(library: dict, media: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("out")
    summary = video(media, "plan", str(library["src"]), str(out))
    return {"out": out, "summary": summary, "plan": json.loads((out / "plan.json").read_text())}


def test_plan_finds_the_cuts_tracks_and_kept_segments(library: dict, planned: dict) -> None:
    plan = planned["plan"]
    main = next(v for v in plan["videos"] if v["name"] == "main")
    found = [s["start_frame"] for s in main["shots"]][1:]
    assert len(found) == len(library["cuts"])
    for cut, at in zip(library["cuts"], found, strict=True):
        assert abs(at - cut) <= SAMPLE_S * FPS  # within one sampled frame
    segments = [s for s in plan["segments"] if s["name"] == "main"]
    # A (shot 0), B (shot 2), and B then C in shot 4; nothing in the faceless shot, nothing
    # of the too-small face of shot 3.
    assert sorted(s["shot"] for s in segments) == [0, 2, 4, 4]
    assert main["tracks"] >= 5  # the small face is tracked, then gated out
    starts = [library["cuts"][0] * 0] + [c / FPS for c in library["cuts"]]
    ends = [c / FPS for c in library["cuts"]] + [sum(s.seconds for s in library["shots"])]
    for segment in segments:
        shot = segment["shot"]
        assert starts[shot] - 1e-6 <= segment["requested_start_s"]
        assert segment["requested_end_s"] <= ends[shot] + 1e-6
        assert segment["pass_rate"] >= 0.7 and 0 < segment["mean_quality"] <= 1
    a_seg, b_seg = (next(s for s in segments if s["shot"] == k) for k in (0, 2))
    assert a_seg["requested_end_s"] - a_seg["requested_start_s"] >= 2.5
    assert b_seg["requested_end_s"] - b_seg["requested_start_s"] >= 2.5
    switch = sorted((s for s in segments if s["shot"] == 4), key=lambda s: s["requested_start_s"])
    assert switch[0]["tracks"] != switch[1]["tracks"]
    assert switch[0]["requested_end_s"] <= switch[1]["requested_start_s"] + 1e-6
    assert abs(switch[0]["requested_end_s"] - 12.0) <= SAMPLE_S + 1e-6  # the switch, ± 1 sample


def test_bad_videos_are_reported_and_the_rest_go_on(planned: dict) -> None:
    summary = planned["summary"]
    errors = summary["errors"]
    assert errors["zero"].startswith("empty file")
    assert errors["truncated"].startswith("unreadable")
    assert errors["sound"] == "no video stream"
    assert errors["cut_short"].startswith("truncated")
    assert "main" not in errors and "sub__empty_room" not in errors
    empty_room = next(v for v in planned["plan"]["videos"] if v["name"] == "sub__empty_room")
    assert empty_room["sampled_frames"] == 4 and empty_room["faces"] == 0
    assert summary["planned_videos"] == 2 and summary["segments"] == 4
    assert summary["links_out_of_folder"] == ["private.mp4"]
    assert summary["names_not_utf8"] == ["caf\\xe9.mp4"]
    names = {v["name"] for v in planned["plan"]["videos"]}
    assert "private" not in names and not any(n.startswith("clips_2024") for n in names)


def test_cut_writes_clips_that_match_the_plan_and_reruns_only_what_is_missing(
    library: dict, planned: dict, media: dict
) -> None:
    out = planned["out"]
    summary = video(media, "cut", str(out), "--write-sidecar")
    assert summary["written"] == 4 and not summary["errors"]
    assert summary["ffmpeg"].startswith("ffmpeg version")
    plan = json.loads((out / "plan.json").read_text())
    keys = keyframe_times(library["src"] / "main.mp4")
    reencoded = 0
    for segment in plan["segments"]:
        cut = segment["cut"]
        clip = Path(cut["clip"])
        assert clip.parent == out / "main" and clip.stem == segment["id"]
        if "reencoded" in cut:  # the keyframe before the start lies in an earlier shot
            assert cut["mode"] == "accurate"
            assert cut["actual_start_s"] == cut["requested_start_s"]
            reencoded += 1
        else:
            assert cut["actual_start_s"] in keys  # stream copy starts at a keyframe ...
            assert cut["actual_start_s"] <= cut["requested_start_s"]  # ... at or before the start
        planned_s = cut["actual_end_s"] - cut["actual_start_s"]
        assert abs(ffprobe_duration(clip) - planned_s) <= 0.15
        sidecar = json.loads(clip.with_suffix(".json").read_text())
        assert sidecar["id"] == segment["id"] and sidecar["cut"]["clip"] == str(clip)
    # Keyframes every 4 s: the shots starting at 5 s and 10 s have none in them before their
    # segment, so those two clips are re-encoded rather than start in the shot before.
    assert reencoded == summary["reencoded"] == 2

    again = video(media, "cut", str(out))
    assert again["written"] == 0 and again["already_cut"] == 4

    # A clip cut short (as by a killed ffmpeg writing in place) and a leftover part file.
    victim = Path(plan["segments"][1]["cut"]["clip"])
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    (victim.parent / f".{victim.stem}.part.mp4").write_bytes(b"half")
    mended = video(media, "cut", str(out))
    assert mended["written"] == 1 and mended["already_cut"] == 3
    assert ffprobe_duration(victim) > 1.0
    assert not list(victim.parent.glob(".*.part.mp4"))

    status = run_facesets("video", "status", str(out), "--json")
    totals = json.loads(status.stdout)["totals"]
    assert totals["planned_segments"] == totals["cut_segments"] == 4
    assert totals["errors"] == 4  # zero, truncated, sound, cut_short


def test_accurate_cut_reencodes_to_the_requested_times(planned: dict, media: dict) -> None:
    out = planned["out"]
    summary = video(media, "cut", str(out), "--accurate")
    # The two clips re-encoded by the copy run are already accurate cuts.
    assert summary["mode"] == "accurate" and summary["written"] == 2
    assert summary["already_cut"] == 2
    for segment in json.loads((out / "plan.json").read_text())["segments"]:
        cut = segment["cut"]
        assert cut["actual_start_s"] == cut["requested_start_s"]
        wanted = cut["requested_end_s"] - cut["requested_start_s"]
        assert abs(ffprobe_duration(Path(cut["clip"])) - wanted) <= 0.15


def test_match_keeps_only_the_chosen_persons_segments(
    library: dict, media: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    src = library["src"] / "main.mp4"
    summary = video(media, "plan", str(src), str(out), "--match", str(library["match_dir"]))
    plan = json.loads((out / "plan.json").read_text())
    assert summary["segments"] == 1
    [segment] = plan["segments"]
    assert segment["shot"] == 0 and segment["match_distance"] <= 0.45


def test_a_killed_plan_resumes_without_repeating_inference_and_run_cuts(
    library: dict, media: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    src = library["src"] / "main.mp4"
    export = ServiceProcess(
        "export", free_port(), tmp_path / "export.log", "--inference", media["inference"].address
    ).start()
    command = [
        "video", "plan", str(src), str(out), "--json", "--sample-fps", "4",
        "--export", export.address, "--inference", media["inference"].address,
    ]  # fmt: skip
    runner = subprocess.Popen([*FACESETS, *command], stdout=subprocess.PIPE, text=True)
    logs = out / "_frames"

    def logged() -> int:
        files = list(logs.glob("*.jsonl"))
        return len(files[0].read_text().splitlines()) - 1 if files else 0

    try:
        wait_for(lambda: logged() >= 8, 60, "the first sampled frames")
        export.kill()  # mid-plan, as a crash
    finally:
        runner.kill()
        runner.wait()
    before = logged()
    assert 8 <= before < 56, before  # 14 s at 4 fps
    [frame_log] = logs.glob("*.jsonl")
    with frame_log.open("ab") as handle:
        handle.write(b'{"frame": 99, "fac')  # a line cut short by the kill
    export.start()
    try:
        resumed = json.loads(
            run_facesets(*command[:-4], "--export", export.address, *command[-2:]).stdout
        )
        assert resumed["reused_frames"] == before
        assert resumed["inferred_frames"] == resumed["sampled_frames"] - before
        # `video run` on the finished plan: no inference, then the cuts.
        command[1] = "run"
        ran = json.loads(
            run_facesets(*command[:-4], "--export", export.address, *command[-2:]).stdout
        )
        finished = ran["plan"]
        assert finished["inferred_frames"] == 0
        assert finished["reused_frames"] == finished["sampled_frames"] == 56
        assert finished["segments"] == 4 and ran["cut"]["written"] == 4
        assert ran["ffmpeg_source"] == "system"
        assert len(list((out / "main").glob("*.mp4"))) == 4
    finally:
        export.stop()


def test_media_service_reports_its_ffmpeg(media: dict) -> None:
    client = ExportClient(Endpoint(media["export"].address))
    try:
        info = client.info()
    finally:
        client.close()
    assert info.ffmpeg_version.startswith("ffmpeg version")
    assert info.ffmpeg_source == "system" and info.scenedetect_version == "0.7.2"


def test_without_system_ffmpeg_the_wheel_probes_durations_and_keyframes(
    library: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facesets.export.video import probe

    monkeypatch.setattr(probe.shutil, "which", lambda name: None)
    probe.tools.cache_clear()
    try:
        tools = probe.tools()
        assert tools.source == "imageio-ffmpeg" and tools.ffprobe is None
        main = library["src"] / "main.mp4"
        facts = probe.media_facts(main)
        assert facts.has_video and abs(facts.duration_s - 14.0) < 0.2
        assert probe.keyframes(main) == keyframe_times(main)
        # The packet listing the cut goes by comes from ffmpeg itself, so the wheel reads it.
        packets = probe.video_packets(main)
        assert len(packets) == 140  # 14 s at 10 fps
        assert sorted(p.pts_s for p in packets if p.key) == keyframe_times(main)
        assert not probe.media_facts(library["src"] / "sound.mp4").has_video
        with pytest.raises(probe.VideoError, match="unreadable"):
            probe.media_facts(library["src"] / "truncated.mkv")
    finally:
        probe.tools.cache_clear()


def test_plan_thresholds_outside_their_ranges_are_refused(tmp_path: Path) -> None:
    from facesets.contract.fields import InvalidParameter
    from facesets.contract.video import VideoPlanParams

    with pytest.raises(InvalidParameter, match="max_yaw"):
        VideoPlanParams(max_yaw=120.0)
    with pytest.raises(InvalidParameter, match="max_segment_s"):
        VideoPlanParams(min_segment_s=5.0, max_segment_s=2.0)
    done = run_facesets("video", "plan", str(tmp_path), str(tmp_path), "--min-pass-rate", "1.5")
    assert done.returncode != 0 and "min_pass_rate" in done.stderr


def test_a_plan_into_its_own_video_folder_is_refused(library: dict, media: dict) -> None:
    """Clips cut among the videos would be planned as videos by the next plan."""
    src = library["src"]
    before = sorted(p.name for p in src.iterdir())
    done = run_facesets(
        "video", "plan", str(src), f"{src}/",
        "--export", media["export"].address, "--inference", media["inference"].address,
    )  # fmt: skip
    assert done.returncode == 1 and f"OUT is SRC ({src})" in done.stderr, done.stderr
    assert sorted(p.name for p in src.iterdir()) == before  # nothing written there


def test_a_cut_that_fails_exits_1_and_a_rerun_cuts_what_is_left(
    library: dict, media: dict, tmp_path: Path
) -> None:
    """The export service may not write a file past 24 KiB (RLIMIT_FSIZE, as on a full disk):
    `video cut` cuts what it can, lists the rest under errors, exits 1 and says to run it
    again; no part file is left; the re-run, with room, cuts only what is left."""
    out = tmp_path / "out"
    video(media, "plan", str(library["src"] / "main.mp4"), str(out))
    export = ServiceProcess(
        "export", free_port(), tmp_path / "export.log", "--inference", media["inference"].address
    ).start(file_size_limit=24 * 1024)
    try:
        full = run_facesets(
            "video", "cut", str(out), "--json", "--export", export.address,
            "--inference", media["inference"].address, timeout=120,
        )  # fmt: skip
    finally:
        export.stop()
    assert full.returncode == 1, full.stderr
    failed = json.loads(full.stdout)["errors"]
    assert failed and f"run `facesets video cut {out}` again" in full.stderr
    assert "Traceback" not in full.stderr
    assert not list(out.rglob("*.part*"))
    again = video(media, "cut", str(out))
    assert again["written"] == len(failed) and not again["errors"]
    plan = json.loads((out / "plan.json").read_text())
    assert all(Path(s["cut"]["clip"]).is_file() for s in plan["segments"])


def test_a_folder_of_src_the_service_cannot_list_is_named(
    library: dict, media: dict, tmp_path: Path
) -> None:
    """A subfolder without read permission used to be left out without a word; the plan now
    names it. The export service runs without root's capability to read any folder."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the capability to read any folder")
    src = tmp_path / "videos"
    (src / "locked").mkdir(parents=True)
    room = library["src"] / "sub" / "empty_room.mp4"
    shutil.copy(room, src / "room.mp4")
    shutil.copy(room, src / "locked" / "hidden.mp4")
    (src / "locked").chmod(0)
    export = ServiceProcess(
        "export", free_port(), tmp_path / "export.log", "--inference", media["inference"].address,
        prefix=["setpriv", "--bounding-set", "-dac_override,-dac_read_search"],
    ).start()  # fmt: skip
    try:
        done = run_facesets(
            "video", "plan", str(src), str(tmp_path / "out"), "--json",
            "--export", export.address, "--inference", media["inference"].address,
        )  # fmt: skip
    finally:
        export.stop()
        (src / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["unreadable_folders"] == ["locked"] and summary["videos"] == 1
