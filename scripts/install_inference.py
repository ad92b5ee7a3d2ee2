"""Install the inference machine's set from its lock file, with exactly one ONNX Runtime.

Run it with the Python of the environment to install into (cmd, PowerShell or a POSIX shell):

    .\\facesets-venv\\Scripts\\python scripts\\install_inference.py directml   (Windows, DirectML)
    .venv/bin/python scripts/install_inference.py cuda                      (Linux, CUDA)
    python scripts/install_inference.py cpu                                 (anywhere, CPU)

It installs locks/windows-directml.txt, locks/linux-cuda.txt or locks/cpu.txt as it is
(`pip install --no-deps -r LOCK`): the versions the tests ran with, InsightFace included and no
`onnxruntime` beside an accelerator build (scripts/locks.py says why and how the locks are
made). Any other ONNX Runtime distribution found first is removed: both write the same
`onnxruntime` package. Then it checks that the one wanted is left and offers its provider.
Re-running it is safe; it also repairs an environment that holds two distributions.
(`make install` is the CPU set with the dev tools.)

Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import locks  # noqa: E402  (scripts/locks.py: the targets and their lock files)

PROJECT = locks.REPO


@dataclass(frozen=True)
class Target:
    lock: locks.Target
    provider: str  # the provider its ONNX Runtime must offer
    platform: str  # sys.platform prefix it installs on, "" for any


TARGETS = {
    "directml": Target(locks.TARGETS["directml"], "DmlExecutionProvider", "win32"),
    "cuda": Target(locks.TARGETS["cuda"], "CUDAExecutionProvider", "linux"),
    "cpu": Target(locks.TARGETS["cpu"], "CPUExecutionProvider", ""),
}


def installed_ort() -> list[str]:
    """Installed distributions that write the `onnxruntime` package."""
    names = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("onnxruntime") or name.startswith("ort-nightly"):
            files = dist.files
            if files is None or any(
                str(f).replace("\\", "/") == "onnxruntime/__init__.py" for f in files
            ):
                names.add(name)
    return sorted(names)


def plan(target_name: str, installed: list[str]) -> list[list[str]]:
    """The pip commands (arguments after `python -m pip`, run in the repository root)."""
    target = TARGETS[target_name]
    steps: list[list[str]] = []
    if installed and installed != [target.lock.ort]:
        # Remove every one: files the two share would be left half-deleted otherwise.
        steps.append(["uninstall", "-y", *installed])
    steps.append(["install", "--no-deps", "-r", target.lock.lock])
    return steps


def _check_platform(target_name: str) -> None:
    wanted = TARGETS[target_name].platform
    if not sys.platform.startswith(wanted):
        raise SystemExit(
            f"'{target_name}' installs for {'Windows' if wanted == 'win32' else 'Linux'}; "
            f"this is {sys.platform}. Choose one of: "
            + ", ".join(n for n, t in TARGETS.items() if sys.platform.startswith(t.platform))
        )


def _verify(target: Target) -> int:
    """Exactly one distribution, the wanted one, and its provider offered: else say so."""
    found = installed_ort()
    code = "import onnxruntime as o, sys; sys.stdout.write(','.join(o.get_available_providers()))"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    providers = probe.stdout.split(",") if probe.returncode == 0 else []
    print(f"ONNX Runtime distributions: {', '.join(found) or 'none'}")
    print(f"providers: {', '.join(providers) or probe.stderr.strip()}")
    if found != [target.lock.ort]:
        print(f"error: expected only {target.lock.ort}", file=sys.stderr)
        return 1
    if target.provider not in providers:
        print(
            f"error: {target.lock.ort} is installed but does not offer {target.provider}; "
            "check the GPU driver (DirectX 12 for DirectML; CUDA and cuDNN for CUDA)",
            file=sys.stderr,
        )
        return 1
    print("ready: `facesets doctor` checks the rest, `facesets serve inference` starts the service")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Install the inference set from its lock file with exactly one ONNX Runtime "
        "distribution: directml (Windows, AMD/Intel/NVIDIA GPUs through DirectX 12), cuda "
        "(Linux, NVIDIA) or cpu.",
    )
    parser.add_argument("target", choices=sorted(TARGETS), help="which lock to install")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.dry_run:
        _check_platform(args.target)
    os.chdir(PROJECT)  # the locks name the local projects as ./clients, ./services, ...
    for step in plan(args.target, installed_ort()):
        command = [sys.executable, "-m", "pip", *step]
        print("+ " + subprocess.list2cmdline(command), flush=True)
        if not args.dry_run and subprocess.run(command).returncode != 0:
            print("error: the step above failed; fix what it says and run this again")
            return 1
    return 0 if args.dry_run else _verify(TARGETS[args.target])


if __name__ == "__main__":
    sys.exit(main())
