"""The documented inference installs hold exactly one ONNX Runtime distribution.

The install commands are read from the README's Windows section; the pip steps they run come
from scripts/install_inference.py itself (`pip install --no-deps -r LOCK`), so what lands on the
machine is the lock file's list as it is. That list is checked: one ONNX Runtime (the
accelerator build), InsightFace, and everything InsightFace needs for that platform (resolved
with `uv pip compile --python-platform`, which evaluates markers for it; pip's --platform does
not). tests/test_locks.py checks that the locks reproduce from the repository. The resolution
needs the package registry; skipped, saying so, only where it cannot be reached.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import urllib.request
from types import ModuleType

import pytest
from conftest import REPO

README = REPO / "README.md"
SCRIPT = REPO / "scripts" / "install_inference.py"
WINDOWS_HEADING = "## Running the inference service on a Windows machine"
# Distributions that write the `onnxruntime` package.
ORT = re.compile(r"^(onnxruntime(-[a-z]+)?|ort-nightly(-[a-z]+)?)$")
NOT_ORT = {"onnxruntime-extensions", "onnxruntime-genai", "onnxruntime-tools"}
LOCAL_PROJECTS = {"./clients", "./services", "./orchestrator"}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_inference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def windows_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(WINDOWS_HEADING)
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def documented_installs() -> dict[str, list[str]]:
    """{target: script arguments} for each install_inference.py line of the Windows section's
    code blocks."""
    installs: dict[str, list[str]] = {}
    blocks = re.findall(r"```(?:bat|sh)\n(.*?)```", windows_section(), re.S)
    for line in "\n".join(blocks).splitlines():
        words = line.split()
        at = next((i for i, w in enumerate(words) if w.endswith("install_inference.py")), None)
        if at is not None:
            arguments = words[at + 1 :]
            installs[arguments[0]] = arguments
    return installs


def ort_names(names: set[str]) -> set[str]:
    return {n for n in names if ORT.match(n) and n not in NOT_ORT}


def installed_by(steps: list[list[str]]) -> set[str]:
    """What the pip steps install: the requirement lines of each `-r LOCK` (all --no-deps)."""
    script = load_script()
    names: set[str] = set()
    for step in steps:
        if step[0] == "install":
            assert "--no-deps" in step, step  # the lock is taken as it is, nothing added
            names |= script.locks.requirement_names(REPO / step[step.index("-r") + 1])
    return names


def registry_reachable() -> str | None:
    index = os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL")
    url = (index or "https://pypi.org/simple").rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(url, timeout=15) as reply:
            reply.read(1)
        return None
    except OSError as error:
        return f"package registry {url} unreachable ({error})"


def compile_names(platform: str, requirement: str) -> set[str]:
    script = load_script()
    result = subprocess.run(
        [*script.locks.uv_command(), "pip", "compile", "-", "--python-platform", platform,
         "--python-version", script.locks.PYTHON, "--no-header", "--no-annotate", "--quiet"],
        input=requirement + "\n", capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in result.stdout.splitlines()
        if "==" in line
    }


@pytest.mark.parametrize(
    ("target", "expected"), [("directml", "onnxruntime-directml"), ("cuda", "onnxruntime-gpu")]
)
def test_documented_install_holds_exactly_one_onnxruntime(target: str, expected: str) -> None:
    if why := registry_reachable():
        pytest.skip(why)
    script = load_script()
    installs = documented_installs()
    assert target in installs, f"the README's Windows section shows no `{target}` install"
    args = script.build_parser().parse_args(installs[target])
    installed = installed_by(script.plan(args.target, []))

    assert ort_names(installed) == {expected}
    assert installed >= LOCAL_PROJECTS
    assert "insightface" in installed
    # Everything InsightFace needs on that platform, but its onnxruntime, comes with the lock.
    pin = next(
        line.split(";")[0].strip()
        for line in (REPO / script.TARGETS[target].lock.lock).read_text().splitlines()
        if line.startswith("insightface==")
    )
    needs = compile_names(script.TARGETS[target].lock.platform, pin)
    assert needs - ort_names(needs) <= installed, sorted(needs - installed)


def test_install_plan_removes_every_other_distribution_first() -> None:
    script = load_script()
    both = ["onnxruntime", "onnxruntime-directml"]
    steps = script.plan("directml", both)
    assert steps[0] == ["uninstall", "-y", *both]
    assert steps[1] == ["install", "--no-deps", "-r", "locks/windows-directml.txt"]
    # Already right: nothing removed, the same install run again.
    assert script.plan("directml", ["onnxruntime-directml"])[0][0] == "install"


def test_install_script_dry_run_prints_the_pip_steps() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "cuda", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=REPO / "tests",  # the steps run in the repository root wherever it is started
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert lines[-1].endswith("-m pip install --no-deps -r locks/linux-cuda.txt"), lines
