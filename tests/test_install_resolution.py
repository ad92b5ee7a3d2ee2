"""The documented inference installs resolve to exactly one ONNX Runtime distribution.

The install commands are read from the README's Windows section; the pip steps they run come
from scripts/install_inference.py itself; each step is resolved with `uv pip compile` for the
target platform, which evaluates environment markers for that platform (pip's --platform does
not). Needs the package registry; skipped, saying so, only where it cannot be reached.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO

README = REPO / "README.md"
SCRIPT = REPO / "scripts" / "install_inference.py"
WINDOWS_HEADING = "## Running the inference service on a Windows machine"
# Distributions that write the `onnxruntime` package.
ORT = re.compile(r"^(onnxruntime(-[a-z]+)?|ort-nightly(-[a-z]+)?)$")
NOT_ORT = {"onnxruntime-extensions", "onnxruntime-genai", "onnxruntime-tools"}


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


def registry_reachable() -> str | None:
    index = os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL")
    url = (index or "https://pypi.org/simple").rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(url, timeout=15) as reply:
            reply.read(1)
        return None
    except OSError as error:
        return f"package registry {url} unreachable ({error})"


@pytest.fixture(scope="module")
def uv() -> list[str]:
    why = registry_reachable()
    if why:
        pytest.skip(why)
    command = [sys.executable, "-m", "uv"]
    probe = subprocess.run([*command, "--version"], capture_output=True, text=True)
    assert probe.returncode == 0, "uv is missing: pip install -e '.[dev]' brings it"
    return command


def compile_names(
    uv: list[str], tmp: Path, platform: str, args: list[str], stdin: str | None = None
) -> set[str]:
    result = subprocess.run(
        [
            *uv,
            "pip",
            "compile",
            *args,
            "--python-platform",
            platform,
            "--python-version",
            "3.11",
            "--no-header",
            "--no-annotate",
            "--quiet",
            "--cache-dir",
            str(tmp / "uv-cache"),
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    names = set()
    for line in result.stdout.splitlines():
        line = line.split("#")[0].strip()
        if line and "==" in line:
            names.add(line.split("==")[0].strip().lower().replace("_", "-"))
    return names


def resolve_steps(uv: list[str], tmp: Path, platform: str, steps: list[list[str]]) -> set[str]:
    """What the pip steps leave installed, as far as resolution tells: each install step
    resolved alone (with --no-deps where the step has it), uninstall steps dropped."""
    installed: set[str] = set()
    for step in steps:
        if step[0] != "install":
            continue
        words = [w for w in step[1:] if w != "-e"]
        no_deps = "--no-deps" in words
        requirements = [w for w in words if not w.startswith("-")]
        for requirement in requirements:
            project = re.fullmatch(r"(.+)\[([^\]]*)\]", requirement)
            if project and Path(project.group(1)).is_dir():
                extras = [e for e in project.group(2).split(",") if e]
                args = [str(Path(project.group(1)) / "pyproject.toml")]
                args += [a for e in extras for a in ("--extra", e)]
                installed |= compile_names(uv, tmp, platform, args)
            else:
                args = ["-", *(["--no-deps"] if no_deps else [])]
                installed |= compile_names(uv, tmp, platform, args, stdin=requirement + "\n")
    return installed


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "platform", "expected"),
    [
        ("directml", "windows", "onnxruntime-directml"),
        ("cuda", "x86_64-manylinux_2_28", "onnxruntime-gpu"),
    ],
)
def test_documented_install_holds_exactly_one_onnxruntime(
    uv: list[str], tmp_path: Path, target: str, platform: str, expected: str
) -> None:
    script = load_script()
    installs = documented_installs()
    assert target in installs, f"the README's Windows section shows no `{target}` install"
    args = script.build_parser().parse_args(installs[target])
    steps = script.plan(args.target, [], REPO, args.editable, tuple(args.extra))
    installed = resolve_steps(uv, tmp_path, platform, steps)

    assert ort_names(installed) == {expected}
    assert "insightface" in installed
    # Everything InsightFace needs, but its onnxruntime, comes with the install.
    insightface = script.insightface_requirement(REPO)
    needs = compile_names(uv, tmp_path, platform, ["-"], stdin=insightface + "\n")
    assert needs - ort_names(needs) <= installed, sorted(needs - installed)


@pytest.mark.slow
def test_cpu_install_holds_only_onnxruntime(uv: list[str], tmp_path: Path) -> None:
    script = load_script()
    steps = script.plan("cpu", [], REPO, True, ("dev",))
    installed = resolve_steps(uv, tmp_path, "x86_64-manylinux_2_28", steps)
    assert ort_names(installed) == {"onnxruntime"}
    assert "insightface" in installed


def test_install_plan_removes_every_other_distribution_first() -> None:
    script = load_script()
    both = ["onnxruntime", "onnxruntime-directml"]
    steps = script.plan("directml", both, REPO)
    assert steps[0] == ["uninstall", "-y", *both]
    assert steps[1] == ["install", f"{REPO}[directml]"]
    assert steps[2] == ["install", "--no-deps", script.insightface_requirement(REPO)]
    # Already right: nothing removed, the same install run again.
    assert script.plan("directml", ["onnxruntime-directml"], REPO)[0][0] == "install"


def test_install_script_dry_run_prints_the_pip_steps() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "cuda", "--dry-run"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert any(f"{REPO}[gpu]" in line for line in lines)
    assert "--no-deps insightface==" in lines[-1]
