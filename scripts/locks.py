"""The lock files, one per target machine: made by `make lock`, checked by `make check-locks`.

    python scripts/locks.py lock [--upgrade]   re-resolve every lock (keeps locked versions
                                               unless an input demands a change, or --upgrade)
    python scripts/locks.py check              re-resolve every lock into a temporary copy and
                                               exit 1, naming it, when one would change

Targets (locks/README.md says the same):
    linux     uv.lock (the workspace lock): Linux services + CLI, CPU inference, dev tools
    cpu       locks/cpu.txt: uv.lock's services + CLI + CPU inference set, as requirements
    cuda      locks/linux-cuda.txt: services, CLI and InsightFace with onnxruntime-gpu
    directml  locks/windows-directml.txt: the same for Windows with onnxruntime-directml
    client    locks/client.txt: facesets-client alone, for any platform

InsightFace requires `onnxruntime` on every platform; beside onnxruntime-gpu or
onnxruntime-directml it would be a second distribution writing the same `onnxruntime` package.
The accelerator locks are resolved with an override that drops it (locks/no-onnxruntime.txt),
so they hold exactly one ONNX Runtime. Installs from a lock take it as it is:
`pip install --no-deps -r LOCK` (scripts/install_inference.py) or `uv pip sync LOCK`, from the
repository root (the local projects are listed as ./clients, ./services, ./orchestrator).

Standard library only (scripts/install_inference.py imports it before anything is installed);
`lock` and `check` need uv (the dev group has it) and the package registry.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = "locks"
PYTHON = "3.11"  # the version the locks are resolved for (and the README's Windows set-up)
OVERRIDE = f"{LOCKS}/no-onnxruntime.txt"


@dataclass(frozen=True)
class Target:
    name: str
    lock: str  # relative to the repository root
    source: str  # what it is resolved from
    platform: str  # uv's --python-platform, "" for a universal lock
    ort: str  # the one ONNX Runtime distribution in it, "" for none
    description: str

    def compile_args(self, output: str) -> list[str]:
        """uv arguments (run in the repository root) that write the lock to `output`."""
        if self.source == "uv.lock":  # exported from the workspace lock, not resolved again
            return ["export", "--frozen", "--all-packages", "--no-dev", "--extra", "cpu",
                    "--extra", "embedded", "--no-hashes", "--no-editable", "--no-header",
                    "--quiet", "-o", output]  # fmt: skip
        args = ["pip", "compile", self.source, "--no-sources", "--python-version", PYTHON]
        args += ["--python-platform", self.platform] if self.platform else ["--universal"]
        if self.ort and self.ort != "onnxruntime":
            args += ["--override", OVERRIDE]
        return [*args, "--custom-compile-command", "make lock", "--quiet", "-o", output]


# The Linux services + CLI target is the workspace lock itself (`uv lock`, `make install`).
LINUX = Target(
    "linux",
    "uv.lock",
    "pyproject.toml",
    "",
    "onnxruntime",
    "Linux services + CLI + CPU inference (+ dev group): make install",
)
TARGETS = {
    t.name: t
    for t in (
        LINUX,
        Target(
            "cpu",
            f"{LOCKS}/cpu.txt",
            "uv.lock",
            "",
            "onnxruntime",
            "services + CLI + CPU inference, no dev tools (uv.lock's set), any platform",
        ),
        Target(
            "cuda",
            f"{LOCKS}/linux-cuda.txt",
            f"{LOCKS}/linux-cuda.in",
            "x86_64-manylinux_2_28",
            "onnxruntime-gpu",
            "Linux inference on NVIDIA (CUDA): services, CLI, InsightFace, onnxruntime-gpu",
        ),
        Target(
            "directml",
            f"{LOCKS}/windows-directml.txt",
            f"{LOCKS}/windows-directml.in",
            "x86_64-pc-windows-msvc",
            "onnxruntime-directml",
            "Windows inference on DirectML: services, CLI, InsightFace, onnxruntime-directml",
        ),
        Target(
            "client",
            f"{LOCKS}/client.txt",
            f"{LOCKS}/client.in",
            "",
            "",
            "facesets-client alone (grpcio, protobuf, numpy, filelock), any platform",
        ),
    )
}


def uv_command() -> list[str]:
    """uv beside this Python (the dev group's), else the one on PATH."""
    here = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if here is None:
        raise SystemExit("uv is missing: `make install` brings it (the dev group)")
    return [here]


def run_uv(args: list[str], root: Path) -> None:
    done = subprocess.run([*uv_command(), *args], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"uv {' '.join(args)} failed:\n{done.stderr.strip()}")


def lock(root: Path = REPO, upgrade: bool = False) -> None:
    more = ["--upgrade"] if upgrade else []
    run_uv(["lock", "--quiet", *more], root)
    for target in TARGETS.values():
        if target is not LINUX:
            exported = target.source == "uv.lock"
            run_uv([*target.compile_args(target.lock), *([] if exported else more)], root)
        print(f"{target.lock}: {target.description}")


def check(root: Path = REPO) -> list[str]:
    """The locks that re-resolving from the repository would change (empty: all reproduce).
    Each is resolved into a copy of itself, so the versions it holds are kept where the inputs
    allow them, as `make lock` keeps them."""
    stale = []
    done = subprocess.run(
        [*uv_command(), "lock", "--check", "--quiet"], cwd=root, capture_output=True, text=True
    )
    if done.returncode != 0:
        stale.append(f"{LINUX.lock}: {done.stderr.strip()}")
    with tempfile.TemporaryDirectory(dir=root / LOCKS, prefix=".check-") as scratch:
        for target in TARGETS.values():
            if target is LINUX:
                continue
            committed = root / target.lock
            if not committed.is_file():
                stale.append(f"{target.lock}: missing (make lock)")
                continue
            copy = Path(scratch) / committed.name
            shutil.copyfile(committed, copy)
            run_uv(target.compile_args(str(copy.relative_to(root))), root)
            if not filecmp.cmp(committed, copy, shallow=False):
                stale.append(f"{target.lock}: re-resolving changes it (make lock)")
    return stale


def requirement_names(lock_file: Path) -> set[str]:
    """The distribution names a requirements-format lock installs (local projects by their
    folder: ./services -> facesets-services is not guessed; the folder name is returned)."""
    names = set()
    for line in lock_file.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if not line or line.startswith("-"):
            continue
        names.add(line.split("==")[0].strip().lower().replace("_", "-"))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("lock", help="re-resolve every lock file")
    made.add_argument("--upgrade", action="store_true", help="take the newest versions allowed")
    commands.add_parser("check", help="exit 1 when re-resolving would change a lock file")
    args = parser.parse_args(argv)
    if args.command == "lock":
        lock(upgrade=args.upgrade)
        return 0
    stale = check()
    for line in stale:
        print(line, file=sys.stderr)
    if not stale:
        print("every lock reproduces: " + ", ".join(t.lock for t in TARGETS.values()))
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
