"""`facesets video` as a user walks it, on a video built from LFW stills (tests/videos.py):
two people in one shot, B-frames across the cuts, and a re-plan into an existing OUT."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_video import media, video  # noqa: F401  # the services and the command
from videos import FPS, ShotSpec, make_video

from services import run_facesets

GATE = ("--min-face-short", "60")  # the side-by-side faces are smaller than the default gate


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> dict:
    """Shot 0: A and B side by side for 3 s; shot 1: nobody for 2 s; shot 2: C for 3 s. Encoded
    with B-frames and a single keyframe (at 0), none at the cuts."""
    a, b, c = (sorted((lfw_dir / n).glob("*.jpg")) for n in ("Amelie_Mauresmo", "Abdullah_Gul",
                                                            "Adrien_Brody"))  # fmt: skip
    src = tmp_path_factory.mktemp("src")
    shots = [
        ShotSpec(3, (40, 40, 160), a[0], face_size=230, motion="still", beside=b[0]),
        ShotSpec(2, (160, 60, 40), None),
        ShotSpec(3, (40, 160, 60), c[0], motion="pan"),
    ]
    cuts = make_video(
        src / "two.mp4", shots, keyframe_s=100, keyframes_at_cuts=False, preset="medium"
    )
    match_dir = tmp_path_factory.mktemp("faceset_c")
    for photo in c[1:5]:
        shutil.copy(photo, match_dir / photo.name)
    return {"src": src, "cuts": cuts, "match_dir": match_dir}


def decoded_frames(clip: Path) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames", "-of", "csv=p=0", str(clip)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip().strip(","))


def clips_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.mp4"))


@pytest.fixture(scope="module")
def cut(scene: dict, media: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    out = tmp_path_factory.mktemp("out")
    ran = video(media, "run", str(scene["src"]), str(out), *GATE, "--write-sidecar")
    return {"out": out, "ran": ran, "plan": json.loads((out / "plan.json").read_text())}


def test_two_faces_in_one_shot_get_a_clip_and_a_sidecar_each(cut: dict) -> None:
    out, ran, plan = cut["out"], cut["ran"], cut["plan"]
    segments = plan["segments"]
    assert sorted(s["shot"] for s in segments) == [0, 0, 2]
    ids = [s["id"] for s in segments]
    assert len(set(ids)) == len(ids) == 3
    both = [s for s in segments if s["shot"] == 0]
    assert both[0]["tracks"] != both[1]["tracks"]
    assert ran["cut"]["written"] == 3 and not ran["cut"]["errors"]
    clips = clips_in(out / "two")
    assert len(clips) == ran["cut"]["written"]  # as many files as the summary reports
    by_id = {s["id"]: s for s in segments}
    for clip in clips:
        sidecar = json.loads(clip.with_suffix(".json").read_text())
        assert sidecar["id"] == clip.stem
        assert sidecar["tracks"] == by_id[clip.stem]["tracks"]  # its own track, not the other's
        assert sidecar["cut"]["clip"] == str(clip)
    status = json.loads(run_facesets("video", "status", str(out), "--json").stdout)
    assert status["totals"]["cut_segments"] == len(clips) == 3
    assert status["remains"] == "nothing"


def test_stream_copied_clips_hold_no_frame_of_another_shot(scene: dict, cut: dict) -> None:
    plan = cut["plan"]
    assert not cut["ran"]["cut"]["errors"]
    [shots] = [v["shots"] for v in plan["videos"] if v["name"] == "two"]
    assert [s["start_frame"] for s in shots[1:]] == scene["cuts"]
    for segment in plan["segments"]:
        shot = shots[segment["shot"]]
        record = segment["cut"]
        clip = Path(record["clip"])
        assert record["actual_start_s"] >= shot["start_s"] - 1e-3  # not from an earlier shot
        span = round((shot["end_s"] - max(shot["start_s"], record["actual_start_s"])) * FPS)
        frames = decoded_frames(clip)
        # Every frame of the clip lies in its shot; B-frames shown after the cut stay out.
        assert frames <= span, (clip.name, frames, span)
        assert frames >= span - 3  # and the clip is not cut much short of it
    # Shot 0 ends at a cut inside a B-frame group: copied, and stopped before the cut.
    assert {s["cut"]["mode"] for s in plan["segments"] if s["shot"] == 0} == {"copy"}
    # Shot 2's only keyframe before it is at 0 (shot 0): re-encoded from its start instead.
    [late] = [s for s in plan["segments"] if s["shot"] == 2]
    assert late["cut"]["mode"] == "accurate" and "reencoded" in late["cut"]
    assert cut["ran"]["cut"]["reencoded"] == 1


def test_a_replan_into_the_same_out_sets_the_other_clips_aside(
    scene: dict,
    cut: dict,
    media: dict,  # noqa: F811
) -> None:
    out = cut["out"]
    before = {c.name for c in clips_in(out / "two")}
    planned = video(media, "plan", str(scene["src"]), str(out), *GATE,
                    "--match", str(scene["match_dir"]))  # fmt: skip
    assert planned["segments"] == 1
    again = video(media, "cut", str(out))
    assert again["already_cut"] == 1 and again["written"] == 0
    [kept] = json.loads((out / "plan.json").read_text())["segments"]
    assert [c.stem for c in clips_in(out / "two")] == [kept["id"]]
    aside = out / "_superseded" / "two"
    assert {c.name for c in clips_in(aside)} == before - {f"{kept['id']}.mp4"}
    assert len(list(aside.glob("*.json"))) == 2  # the sidecars went with their clips
    assert sorted(planned["set_aside_clips"]) == sorted(str(c) for c in clips_in(aside))
    status = json.loads(run_facesets("video", "status", str(out), "--json").stdout)
    assert status["remains"] == "nothing" and status["unplanned_clips"] == []

    # A clip put back by hand is not in the plan: status says so.
    stray = clips_in(aside)[0]
    shutil.copy(stray, out / "two" / stray.name)
    status = json.loads(run_facesets("video", "status", str(out), "--json").stdout)
    assert status["unplanned_clips"] == [str(out / "two" / stray.name)]
    assert status["remains"] != "nothing" and "not in the plan" in status["remains"]


def test_a_plan_edited_to_reach_outside_its_folders_cuts_nothing_there(
    scene: dict, cut: dict, tmp_path: Path
) -> None:
    """plan.json lies in OUT, which others may write: a segment naming a video outside the
    plan's SRC, a clip folder or an id that climbs out of OUT, or a clip in a folder elsewhere
    is refused by `facesets video cut` (embedded: its local service is allowed the plan's SRC
    alone) and left alone by `video status`. Before, cut read the other video and wrote the
    clip wherever the names led, and status counted the folder elsewhere as OUT's."""
    out = tmp_path / "out"
    shutil.copytree(cut["out"], out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    private = elsewhere / "private.mp4"
    shutil.copy(scene["src"] / "two.mp4", private)
    foreign_clip = elsewhere / "0b8d7c4e-1f2a-4b3c-9d8e-7f6a5b4c3d2e.mp4"
    shutil.copy(scene["src"] / "two.mp4", foreign_clip)
    before = sorted(p.name for p in tmp_path.rglob("*") if not p.is_relative_to(out))

    plan_path = out / "plan.json"
    plan = json.loads(plan_path.read_text())
    base = {k: v for k, v in plan["segments"][0].items() if k != "cut"}
    ids = iter(f"1a2b3c4d-0000-4000-8000-00000000000{i}" for i in range(4))
    planted = [
        {**base, "id": next(ids), "source": str(private)},
        {**base, "id": next(ids), "name": "../escaped"},
        {**base, "id": "../../x"},
    ]
    first = plan["segments"][0]
    moved = {**first, "id": next(ids), "cut": {**first["cut"], "clip": str(foreign_clip)}}
    plan["segments"] = [first, moved, *planted]
    plan_path.write_text(json.dumps(plan))

    done = run_facesets("video", "cut", str(out), "--json", timeout=300)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    errors = summary["refused"]
    assert summary["errors"] == {} and "were refused (see refused)" in done.stderr
    assert "not under the plan's SRC" in errors[planted[0]["id"]]
    assert "not a plain name inside OUT" in errors[planted[1]["id"]]
    assert "not a segment id" in errors["../../x"]
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.is_relative_to(out)) == before
    assert not (tmp_path / "escaped").exists()
    status = json.loads(run_facesets("video", "status", str(out), "--json").stdout)
    assert str(foreign_clip) not in status["unplanned_clips"]
    assert foreign_clip.is_file()
