"""What ONNX Runtime this machine has: its distributions, its providers, and how to fix it.

Several PyPI distributions (onnxruntime, onnxruntime-directml, onnxruntime-gpu, ...) write the
same `onnxruntime` package; with two installed, whichever landed last wins and the other's
providers silently vanish. Nothing here imports InsightFace, so `facesets doctor` can use it on
any machine.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from facesets.common import settings

CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Accelerator:
    short: str  # as in --providers
    provider: str  # ONNX Runtime's name
    label: str  # in plain words
    distribution: str  # the PyPI distribution that brings it
    install_target: str  # argument of scripts/install_inference.py


ACCELERATORS = (
    Accelerator("dml", "DmlExecutionProvider", "DirectML", "onnxruntime-directml", "directml"),
    Accelerator("cuda", "CUDAExecutionProvider", "CUDA", "onnxruntime-gpu", "cuda"),
)
PROVIDER_NAMES = {a.short: a.provider for a in ACCELERATORS} | {"cpu": CPU}

# Test hook: a JSON object {"distributions": {NAME: VERSION}, "providers": [...], "version": V}
# that replaces what probe() finds, so tests can play a broken Windows install on any machine.
# The sessions themselves still run on the onnxruntime really installed.
SIMULATE_ENV = "FACESETS_SIMULATED_ORT"

INSTALL_SCRIPT = Path("scripts") / "install_inference.py"


@dataclass(frozen=True)
class OrtInstall:
    """The ONNX Runtime of this environment, as far as it can be told without a session."""

    distributions: tuple[tuple[str, str], ...]  # (name, version), every one installed
    available: tuple[str, ...]  # providers the imported onnxruntime offers
    version: str  # of the imported onnxruntime module; "" when it does not import
    import_error: str = ""

    def described(self) -> str:
        return ", ".join(f"{name} {version}" for name, version in self.distributions) or "none"

    @property
    def loaded_distribution(self) -> str:
        """The distribution whose files `import onnxruntime` loads (best evidence: version, then
        the providers only that distribution brings)."""
        same = [name for name, version in self.distributions if version == self.version]
        for accelerator in ACCELERATORS:
            if accelerator.distribution in same and accelerator.provider in self.available:
                return accelerator.distribution
        candidates = same or [name for name, _ in self.distributions]
        if len(candidates) > 1 and "onnxruntime" in candidates:
            return "onnxruntime"
        return candidates[0] if candidates else ""


def _writes_onnxruntime(dist: metadata.Distribution) -> bool:
    files = dist.files
    if files is None:  # no RECORD: trust the name
        return True
    return any(str(path).replace("\\", "/") == "onnxruntime/__init__.py" for path in files)


def installed_distributions() -> list[tuple[str, str]]:
    """Every installed distribution that writes the `onnxruntime` package."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not (name.startswith("onnxruntime") or name.startswith("ort-nightly")):
            continue
        if name not in found and _writes_onnxruntime(dist):
            found[name] = dist.version
    return sorted(found.items())


def _simulated(raw: str) -> OrtInstall:
    data = json.loads(raw)
    distributions = tuple(sorted((str(k), str(v)) for k, v in data["distributions"].items()))
    version = str(data.get("version") or (distributions[-1][1] if distributions else ""))
    return OrtInstall(distributions, tuple(data["providers"]), version)


def probe() -> OrtInstall:
    raw = os.environ.get(SIMULATE_ENV)
    if raw:
        return _simulated(raw)
    distributions = tuple(installed_distributions())
    try:
        import onnxruntime as ort

        return OrtInstall(distributions, tuple(ort.get_available_providers()), ort.__version__)
    except Exception as error:  # absent, or a half-overwritten package that fails to load
        return OrtInstall(distributions, (), "", f"{type(error).__name__}: {error}")


def short_names(requested: Sequence[str]) -> list[str]:
    names = [p.strip().lower() for p in requested if p.strip()]
    for name in names:
        if name not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider '{name}': choose from {', '.join(PROVIDER_NAMES)}")
    return names


def accelerator_by_provider(provider: str) -> Accelerator | None:
    return next((a for a in ACCELERATORS if a.provider == provider), None)


def wanted_accelerator(explicit: Sequence[str] | None, install: OrtInstall) -> Accelerator | None:
    """The accelerator the provider order asks for first, if any.

    An explicit order (`--providers`) asks for its first entry. The default order asks for an
    accelerator only when an accelerator build of ONNX Runtime is installed (the install says a
    GPU is meant): onnxruntime-directml asks for DirectML, onnxruntime-gpu for CUDA. A machine with
    the plain `onnxruntime` runs the default order on what it has, CPU included, without fuss.
    """
    if explicit:
        first = short_names(explicit)[0]
        return next((a for a in ACCELERATORS if a.short == first), None)
    names = {name for name, _ in install.distributions}
    for short in settings.inference().runtime.providers:
        accelerator = next((a for a in ACCELERATORS if a.short == short), None)
        if accelerator is not None and accelerator.distribution in names:
            return accelerator
    return None


def _script_in_checkout() -> Path | None:
    script = Path(__file__).resolve().parents[3] / INSTALL_SCRIPT
    return script if script.is_file() else None


def install_command(target: str) -> str:
    """The exact command that (re)installs the inference dependencies for `target`."""
    script = _script_in_checkout()
    argv = [sys.executable, str(script or INSTALL_SCRIPT), target]
    return subprocess.list2cmdline(argv) if sys.platform == "win32" else shlex.join(argv)


def fix_advice(accelerator: Accelerator) -> str:
    where = "" if _script_in_checkout() else " (from the facesets checkout)"
    return f"Fix the install with:\n    {install_command(accelerator.install_target)}{where}"


def unavailable_problem(accelerator: Accelerator, install: OrtInstall) -> str:
    """Plain words for 'the accelerator asked for is not available', with the fix."""
    offered = ", ".join(install.available) or "no providers at all"
    lines = [
        f"{accelerator.label} ({accelerator.provider}) was asked for first, but the ONNX Runtime "
        f"installed here offers only {offered}."
    ]
    if install.import_error:
        lines.append(f"onnxruntime does not import: {install.import_error}.")
    if len(install.distributions) > 1:
        lines.append(
            f"{len(install.distributions)} ONNX Runtime distributions are installed "
            f"({install.described()}); they overwrite each other's files, so only one of them "
            "works."
        )
    elif accelerator.distribution not in {name for name, _ in install.distributions}:
        lines.append(
            f"{accelerator.distribution}, which brings {accelerator.label}, is not installed "
            f"(found: {install.described()})."
        )
    lines.append(fix_advice(accelerator))
    return "\n".join(lines)


def not_in_use_problem(accelerator: Accelerator, in_use: Sequence[str]) -> str:
    """The accelerator was offered but the models' sessions did not take it."""
    libraries = (
        " Check that the CUDA and cuDNN libraries onnxruntime-gpu needs are installed."
        if accelerator.short == "cuda"
        else " Check that the GPU driver supports DirectX 12."
    )
    return (
        f"{accelerator.label} ({accelerator.provider}) is listed by ONNX Runtime, but the models "
        f"were loaded on {', '.join(in_use) or 'nothing'} (see ONNX Runtime's warnings above)."
        f"{libraries}\n{fix_advice(accelerator)}"
    )
