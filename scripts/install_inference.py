"""Install facesets with the inference service's dependencies and exactly one ONNX Runtime.

Run it with the Python of the environment to install into (cmd, PowerShell or a POSIX shell):

    .\\facesets-venv\\Scripts\\python scripts\\install_inference.py directml   (Windows, DirectML)
    .venv/bin/python scripts/install_inference.py cuda                      (Linux, CUDA)
    .venv/bin/python scripts/install_inference.py cpu                       (anywhere, CPU)

Why a script: InsightFace requires `onnxruntime` unconditionally. Installed beside
onnxruntime-directml or onnxruntime-gpu, both write the same `onnxruntime` package and whichever
lands last wins, often leaving only the CPU. So for an accelerator this installs the project with
the `directml` or `gpu` extra (which lists InsightFace's other requirements), then InsightFace
alone with --no-deps. Any other ONNX Runtime distribution found first is removed. Re-running it
is safe; it also repairs an environment that holds two distributions.

Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    extra: str  # of pyproject.toml
    distribution: str  # the one ONNX Runtime distribution wanted
    provider: str  # the provider it must offer
    platform: str  # "win32", "linux" or "" for any
    insightface_without_deps: bool


TARGETS = {
    "directml": Target("directml", "onnxruntime-directml", "DmlExecutionProvider", "win32", True),
    "cuda": Target("gpu", "onnxruntime-gpu", "CUDAExecutionProvider", "linux", True),
    # The plain build is the one InsightFace asks for: one ordinary install.
    "cpu": Target("cpu", "onnxruntime", "CPUExecutionProvider", "", False),
}


def insightface_requirement(project: Path = PROJECT) -> str:
    """The InsightFace pin, read from the `cpu` extra of pyproject.toml (its one source)."""
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'"(insightface==[^";\s]+)"', text)
    if found is None:
        raise SystemExit(f"no insightface==VERSION pin in {project / 'pyproject.toml'}")
    return found.group(1)


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


def plan(
    target_name: str,
    installed: list[str],
    project: Path = PROJECT,
    editable: bool = False,
    extras: tuple[str, ...] = (),
) -> list[list[str]]:
    """The pip commands (arguments after `python -m pip`) that make the install, in order."""
    target = TARGETS[target_name]
    steps: list[list[str]] = []
    if installed and installed != [target.distribution]:
        # Remove every one: files the two share would be left half-deleted otherwise.
        steps.append(["uninstall", "-y", *installed])
    spec = f"{project}[{','.join((target.extra, *extras))}]"
    steps.append(["install", *(["-e"] if editable else []), spec])
    if target.insightface_without_deps:
        steps.append(["install", "--no-deps", insightface_requirement(project)])
    return steps


def _check_platform(target_name: str) -> None:
    wanted = TARGETS[target_name].platform
    if wanted and not sys.platform.startswith(wanted):
        raise SystemExit(
            f"'{target_name}' installs for {'Windows' if wanted == 'win32' else 'Linux'}; "
            f"this is {sys.platform}. Choose one of: "
            + ", ".join(
                n for n, t in TARGETS.items() if not t.platform or sys.platform == t.platform
            )
        )


def _verify(target: Target) -> int:
    """Exactly one distribution, the wanted one, and its provider offered: else say so."""
    found = installed_ort()
    code = "import onnxruntime as o, sys; sys.stdout.write(','.join(o.get_available_providers()))"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    providers = probe.stdout.split(",") if probe.returncode == 0 else []
    print(f"ONNX Runtime distributions: {', '.join(found) or 'none'}")
    print(f"providers: {', '.join(providers) or probe.stderr.strip()}")
    if found != [target.distribution]:
        print(f"error: expected only {target.distribution}", file=sys.stderr)
        return 1
    if target.provider not in providers:
        print(
            f"error: {target.distribution} is installed but does not offer {target.provider}; "
            "check the GPU driver (DirectX 12 for DirectML; CUDA and cuDNN for CUDA)",
            file=sys.stderr,
        )
        return 1
    print("ready: `facesets doctor` checks the rest, `facesets serve inference` starts the service")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Install facesets for the inference service with exactly one ONNX Runtime "
        "distribution: directml (Windows, AMD/Intel/NVIDIA GPUs through DirectX 12), cuda "
        "(Linux, NVIDIA) or cpu.",
    )
    parser.add_argument("target", choices=sorted(TARGETS), help="which ONNX Runtime to install")
    parser.add_argument("--editable", action="store_true", help="install the checkout with -e")
    parser.add_argument(
        "--extra", action="append", default=[], help="another extra of facesets, e.g. dev, clip"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.dry_run:
        _check_platform(args.target)
    steps = plan(args.target, installed_ort(), PROJECT, args.editable, tuple(args.extra))
    for step in steps:
        command = [sys.executable, "-m", "pip", *step]
        print("+ " + subprocess.list2cmdline(command), flush=True)
        if not args.dry_run and subprocess.run(command).returncode != 0:
            print("error: the step above failed; fix what it says and run this again")
            return 1
    return 0 if args.dry_run else _verify(TARGETS[args.target])


if __name__ == "__main__":
    sys.exit(main())
