"""ffmpeg discovery and what it tells about a file: duration, streams, keyframes.

ffmpeg comes from the system PATH, or from the imageio-ffmpeg wheel where the system has none.
The wheel ships no ffprobe; then durations and keyframes are read from ffmpeg's own output.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class VideoError(Exception):
    """A video that cannot be planned or cut; the message is the reason."""


@dataclass(frozen=True)
class Tools:
    ffmpeg: str
    ffprobe: str | None
    source: str  # "system" or "imageio-ffmpeg"
    version: str


@functools.cache
def tools() -> Tools:
    ffmpeg = shutil.which("ffmpeg")
    source = "system"
    if ffmpeg is None:
        # The wheel's binary, for machines without ffmpeg; it ships no type information.
        import imageio_ffmpeg  # type: ignore[import-untyped]

        ffmpeg, source = imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"
    ffprobe = shutil.which("ffprobe") if source == "system" else None
    out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=False)
    version = (out.stdout.splitlines() or ["unknown"])[0]
    log.info("ffmpeg", path=ffmpeg, source=source, version=version, ffprobe=ffprobe)
    return Tools(ffmpeg, ffprobe, source, version)


@dataclass(frozen=True)
class MediaFacts:
    duration_s: float
    has_video: bool


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def media_facts(path: Path) -> MediaFacts:
    """Duration and whether a video stream is there; VideoError names what is wrong."""
    if not path.exists():
        raise VideoError("missing file")
    if path.stat().st_size == 0:
        raise VideoError("empty file (zero bytes)")
    t = tools()
    if t.ffprobe:
        out = subprocess.run(
            [t.ffprobe, "-v", "error", "-show_entries", "format=duration:stream=codec_type",
             "-of", "json", str(path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise VideoError(f"unreadable: {_last_line(out.stderr)}")
        facts = json.loads(out.stdout or "{}")
        kinds = [s.get("codec_type") for s in facts.get("streams", [])]
        duration = float(facts.get("format", {}).get("duration") or 0.0)
        return MediaFacts(duration, "video" in kinds)
    out = subprocess.run(
        [t.ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    text = out.stderr
    match = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    if match is None:
        raise VideoError(f"unreadable: {_last_line(text)}")
    h, m, s = match.groups()
    return MediaFacts(int(h) * 3600 + int(m) * 60 + float(s), "Video:" in text)


def keyframes(path: Path) -> list[float]:
    """Presentation times (s) of the video's keyframes, ascending."""
    t = tools()
    if t.ffprobe:
        out = subprocess.run(
            [t.ffprobe, "-v", "error", "-select_streams", "v:0", "-skip_frame", "nokey",
             "-show_entries", "frame=pts_time", "-of", "csv=p=0", str(path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        times = [float(v) for v in re.findall(r"[-\d.]+", out.stdout) if v not in ("-", ".")]
    else:
        out = subprocess.run(
            [t.ffmpeg, "-hide_banner", "-skip_frame", "nokey", "-i", str(path), "-map", "0:v:0",
             "-vf", "showinfo", "-f", "null", "-"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        times = [float(v) for v in re.findall(r"pts_time:([-\d.]+)", out.stderr)]
    return sorted(times) or [0.0]


def clip_duration(path: Path) -> float | None:
    """The duration of a written clip, or None when it does not open as a video."""
    try:
        facts = media_facts(path)
    except VideoError:
        return None
    return facts.duration_s if facts.has_video and facts.duration_s > 0 else None


@dataclass(frozen=True)
class Packet:
    pts_s: float  # presentation time, on ffmpeg's timeline (the file's start is 0)
    duration_s: float
    key: bool


def video_packets(path: Path) -> list[Packet]:
    """The first video stream's packets in decode order, read by ffmpeg without decoding
    (its framecrc listing, so that the imageio-ffmpeg wheel without ffprobe reads them too)."""
    out = subprocess.run(
        [tools().ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
         "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise VideoError(f"unreadable: {_last_line(out.stderr)}")
    timebase = re.search(r"^#tb 0: (\d+)/(\d+)", out.stdout, re.MULTILINE)
    if timebase is None:
        raise VideoError("no video packets")
    unit = int(timebase.group(1)) / int(timebase.group(2))
    packets = []
    for line in out.stdout.splitlines():
        if line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6 or fields[0] != "0":
            continue
        pts = int(fields[2])
        if pts == -(2**63):  # no presentation time: nothing to place it by
            continue
        flags = next((int(f[2:], 16) for f in fields[6:] if f.startswith("F=")), 1)
        packets.append(Packet(round(pts * unit, 6), int(fields[3]) * unit, bool(flags & 1)))
    return packets
