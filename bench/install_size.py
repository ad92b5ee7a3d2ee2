"""Install budgets: each target's environment built from its lock in a fresh folder, measured.

    python bench/install_size.py [--target NAME ...] [--time-install]   (make size)

Linux targets are installed as a machine would get them (a fresh venv, `uv pip sync LOCK`:
no dev tools, the local projects as ordinary wheels) and measured on disk (each file once, in
blocks) with the count of installed distributions. The Windows DirectML set cannot be installed
here: its locked wheels for Windows / Python 3.11 are unpacked into a folder (`uv pip install
--target --python-platform`), which is what a venv holds less the interpreter. --time-install
also times `make install` in a fresh clone of HEAD (with the package caches as they are: warm
after the first run). Prints one line per target and exits 1 when one is over its budget.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import locks  # noqa: E402  (scripts/locks.py: the targets and their lock files)

MB = 1_000_000
# The budgets of issue 28, in bytes (None: measured, no budget).
BUDGETS: dict[str, int | None] = {
    "cpu": 1200 * MB,
    "client": 120 * MB,
    "directml": 1000 * MB,
    "cuda": None,
}
INSTALL_SECONDS = 180


def disk_usage(folder: Path) -> int:
    """Bytes on disk under folder, each inode once (uv hard-links from its cache)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            info = os.lstat(os.path.join(top, name))
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def distributions(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.dist-info"))


def uv(*args: str) -> None:
    done = subprocess.run([*locks.uv_command(), *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"uv {' '.join(args)} failed:\n{done.stderr.strip()}")


def build(name: str, scratch: Path) -> Path:
    """The environment (or, for Windows, the unpacked set) of one target; returns its folder."""
    target = locks.TARGETS[name]
    folder = scratch / name
    if name == "directml":
        uv("pip", "install", "--quiet", "--no-deps", "--target", str(folder),
           "--python-platform", target.platform, "--python-version", locks.PYTHON,
           "-r", target.lock)  # fmt: skip
        return folder
    uv("venv", "--quiet", "--python", locks.PYTHON, str(folder))
    uv("pip", "sync", "--quiet", "--python", str(folder / "bin" / "python"), target.lock)
    return folder


def time_make_install(scratch: Path) -> float:
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    started = time.monotonic()
    done = subprocess.run(["make", "install"], cwd=clone, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"make install failed:\n{done.stdout}\n{done.stderr}")
    venv = clone / ".venv"
    print(
        f"make install (fresh clone, warm caches): {seconds:.0f} s, .venv "
        f"{disk_usage(venv) / MB:.0f} MB, {distributions(venv)} distributions "
        f"(budget {INSTALL_SECONDS} s)"
    )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", choices=sorted(BUDGETS), default=[])
    parser.add_argument("--time-install", action="store_true", help="also time make install")
    args = parser.parse_args(argv)
    names = args.target or ["cpu", "cuda", "client", "directml"]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {locks.PYTHON} sets")
    over = False
    with tempfile.TemporaryDirectory(prefix="facesets-size-") as tmp:
        for name in names:
            started = time.monotonic()
            folder = build(name, Path(tmp))
            size, count = disk_usage(folder), distributions(folder)
            budget = BUDGETS[name]
            verdict = "" if budget is None else f" (budget {budget / MB:.0f} MB)"
            over = over or (budget is not None and size > budget)
            print(
                f"{name:9} {locks.TARGETS[name].lock:28} {size / MB:7.0f} MB  "
                f"{count:3} distributions  built in {time.monotonic() - started:.0f} s{verdict}",
                flush=True,
            )
        if args.time_install:
            over = time_make_install(Path(tmp)) > INSTALL_SECONDS or over
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
