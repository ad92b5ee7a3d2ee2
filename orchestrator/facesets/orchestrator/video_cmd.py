"""`facesets video plan|cut|status|run`: face-swap target clips from a folder of videos.

Planning and cutting run on the export/media service (it owns ffmpeg and the video decode);
sampled frames go from there to the inference service. `status` reads OUT's files here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facesets.contract import layout
from facesets.contract.manifests import VideoPlan
from facesets.contract.video import (
    VideoCutParams,
    VideoCutRequest,
    VideoPlanParams,
    VideoPlanRequest,
)
from facesets.orchestrator import stages
from facesets.orchestrator.connect import Services, add_service_arguments, services
from facesets.orchestrator.flags import add_params_flags, params_from_args
from facesets.orchestrator.jobs import print_summary
from facesets.orchestrator.video_status import video_status


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--match",
        type=Path,
        metavar="FACESET_DIR",
        help="keep only tracks of the person of this faceset's images (their centroid)",
    )
    add_params_flags(parser.add_argument_group("planning thresholds"), VideoPlanParams)


def _cut_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accurate",
        action="store_true",
        help="re-encode (libx264) for exact boundaries instead of stream copy from a keyframe",
    )
    parser.add_argument(
        "--write-sidecar", action="store_true", help="write <uuid>.json provenance beside clips"
    )


def _plan_job(args: argparse.Namespace) -> VideoPlanRequest:
    params = params_from_args(VideoPlanParams, args)
    match = args.match.expanduser().resolve() if args.match else None
    if match is not None and not match.is_dir():
        raise ValueError(f"no faceset folder at {match}")
    return VideoPlanRequest(args.src.expanduser().resolve(), _out(args), match, params)


def _cut_job(args: argparse.Namespace, sources: list[Path]) -> VideoCutRequest:
    params = VideoCutParams(accurate=args.accurate, write_sidecar=args.write_sidecar)
    return VideoCutRequest(_out(args), params, tuple(sources))


def _out(args: argparse.Namespace) -> Path:
    return Path(args.out).expanduser().resolve()


def _planned_src(out: Path) -> list[Path]:
    """The SRC the plan was made from: what a local media service may read (the service cuts
    only segments whose video lies under it); not each path the plan names."""
    plan = VideoPlan.read(out / layout.VIDEO_PLAN)
    return [Path(plan.src)] if plan is not None and plan.src else []


def _run_plan(args: argparse.Namespace) -> dict[str, object]:
    job = _plan_job(args)
    if not job.src.exists():
        raise ValueError(f"no videos at {job.src}")
    with services(args, job.roots()) as opened:
        return stages.video_plan(opened, job, not args.json).as_dict()


def _run_cut(args: argparse.Namespace) -> dict[str, object]:
    out = _out(args)
    job = _cut_job(args, _planned_src(out))
    with services(args, job.roots()) as opened:
        return {**stages.video_cut(opened, job, not args.json).as_dict(), **_media(opened)}


def _run_both(args: argparse.Namespace) -> dict[str, object]:
    plan_job = _plan_job(args)
    if not plan_job.src.exists():
        raise ValueError(f"no videos at {plan_job.src}")
    cut_job = _cut_job(args, [plan_job.src])  # ffmpeg reads the planned videos under SRC
    with services(args, [*plan_job.roots(), *cut_job.roots()]) as opened:
        planned = stages.video_plan(opened, plan_job, not args.json)
        cut = stages.video_cut(opened, cut_job, not args.json)
        return {"plan": planned.as_dict(), "cut": cut.as_dict(), **_media(opened)}


def _media(opened: Services) -> dict[str, str]:
    info = stages.media_info(opened)
    return {"ffmpeg": info["ffmpeg"], "ffmpeg_source": info["ffmpeg_source"]}


def _status(args: argparse.Namespace) -> dict[str, object]:
    return video_status(_out(args))


CUT_EXIT_CODES = (
    "exit codes: 0 done (videos that cannot be planned are listed under errors); 1 some "
    "planned segments were not cut, a full disk say (a re-run cuts them)"
)

SUBCOMMANDS = {
    "plan": (
        "find shots, sample frames at 2 fps, track faces and plan the segments to keep "
        "(OUT/plan.json; resumable)",
        ["src", "out", "plan"],
        _run_plan,
    ),
    "cut": (
        "cut every planned segment into OUT/<source name>/<uuid>.mp4 with ffmpeg",
        ["out", "cut"],
        _run_cut,
    ),
    "status": (
        "per video: sampled frames, faces, tracks, planned and cut segments, errors",
        ["out"],
        _status,
    ),
    "run": (
        "plan, then cut; a progress bar per stage (sampled frames, then clips: rate and ETA)",
        ["src", "out", "plan", "cut"],
        _run_both,
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="video_command", required=True, metavar="COMMAND")
    for name, (help_text, parts, handler) in SUBCOMMANDS.items():
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=CUT_EXIT_CODES if "cut" in parts else None,
        )
        if "src" in parts:
            sub.add_argument("src", type=Path, help="a video or a folder of videos (recursive)")
        sub.add_argument("out", type=Path, help="output folder (plan.json, clips)")
        if "plan" in parts:
            _plan_arguments(sub)
        if "cut" in parts:
            _cut_arguments(sub)
        sub.add_argument("--json", action="store_true", help="print the summary as JSON")
        if name != "status":
            add_service_arguments(sub, "export", "inference")
        sub.set_defaults(video_handler=handler)


def run(args: argparse.Namespace) -> int:
    """0, or 1 when a planned segment could not be cut (a full disk, ffmpeg failing: a re-run
    cuts those) or was refused (plan.json names paths outside its folders). Videos that cannot
    be planned (not a video, cut short) are listed under "errors" and do not change the exit
    code: a re-run would find them as they are."""
    summary = args.video_handler(args)
    print_summary(summary, args.json)  # status too: a table per video unless --json
    # `cut` answers the cut's summary; `run` the plan's and the cut's, under "cut".
    cut = {"cut": summary, "run": summary.get("cut")}.get(args.video_command)
    failed = cut.get("errors") if isinstance(cut, dict) else None
    refused = cut.get("refused") if isinstance(cut, dict) else None
    if refused:
        print(
            f"error: {len(refused)} planned segment(s) were refused (see refused): plan.json "
            "names a video outside its SRC, or a clip path outside OUT. Run `facesets video "
            "plan` again to write a plan of your own",
            file=sys.stderr,
        )
    if failed:
        print(
            f"error: {len(failed)} planned segment(s) were not cut (see errors); run `facesets "
            f"video cut {args.out}` again to cut them",
            file=sys.stderr,
        )
    return 1 if failed or refused else 0


COMMANDS = {
    "video": (
        "face-swap target clips from videos: plan (shots, face tracks, kept segments), "
        "cut (ffmpeg), status, run (plan then cut)",
        add_arguments,
        run,
    )
}
