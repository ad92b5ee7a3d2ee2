"""Three distributions over one contract: facesets-client (clients/), facesets-services
(services/) and facesets, the CLI (orchestrator/).

The wheels are built from the tracked files alone (as a clean checkout has them), each installed
into a fresh virtual environment, and used there: the client alone calls a running inference
service without OpenCV, SciPy, scikit-learn, faiss or ONNX Runtime beside it; the services wheel
serves all three services; the CLI wheel runs `facesets run` on LFW photos with the services
installed, and its other commands without them. Import boundaries are checked on the source.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from conftest import MODEL_PACK, REPO, SHARED, free_port, lfw_people

SERVICE_PACKAGES = (
    "facesets.common",
    "facesets.inference",
    "facesets.clustering",
    "facesets.export",
)
SERVICE_MODULES = (*SERVICE_PACKAGES, "facesets.serve")
# The CLI reaches the services' code only to run it on this machine: `facesets serve` (cli.py),
# the check of this machine's inference install (doctor.py) and `facesets clip export`
# (clip_cmd.py); each imports it when used, so every other command works without the services.
CLI_MAY_RUN_SERVICES = {"cli.py", "doctor.py", "clip_cmd.py"}
HEAVY = (
    "opencv-python",
    "scipy",
    "scikit-learn",
    "faiss-cpu",
    "numba",
    "onnxruntime",
    "insightface",
)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, at module level?) for each import statement of a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(name, id(node) in top) for name in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_cli_imports_no_service_module_outside_the_launchers():
    offending = []
    for path in sorted((REPO / "orchestrator").rglob("*.py")):
        for module, top_level in _imports(path):
            if not _within(module, SERVICE_MODULES):
                continue
            if path.name not in CLI_MAY_RUN_SERVICES or top_level:
                offending.append(f"{path.relative_to(REPO)} imports {module}")
    assert not offending, "\n".join(offending)


def test_the_client_distribution_imports_neither_services_nor_cli():
    offending = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "clients").rglob("*.py"))
        for module, _ in _imports(path)
        if _within(module, (*SERVICE_MODULES, "facesets.orchestrator"))
    ]
    assert not offending, "\n".join(offending)


def test_the_services_import_no_cli_module():
    offending = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "services").rglob("*.py"))
        for module, _ in _imports(path)
        if _within(module, ("facesets.orchestrator",))
    ]
    assert not offending, "\n".join(offending)


def test_a_boundary_violation_is_caught(tmp_path):
    """The boundary check itself: a CLI module importing a service module is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from facesets.clustering.store import FaceStore\n", encoding="utf-8")
    assert ("facesets.clustering.store", True) in _imports(bad)
    assert _within("facesets.clustering.store", SERVICE_MODULES)


# --- wheels ----------------------------------------------------------------------------------
def _uv(*args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is missing: `make install` brings it"
    done = subprocess.run([uv, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, f"uv {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """The three wheels, built from the tracked files of the repository (a clean checkout)."""
    root = tmp_path_factory.mktemp("wheels")
    checkout = root / "checkout"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        source = REPO / name.decode()
        if source.is_file():
            target = checkout / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    out = root / "dist"
    built = {}
    for folder, distribution in (
        ("clients", "facesets_client"),
        ("services", "facesets_services"),
        ("orchestrator", "facesets"),
    ):
        _uv("build", "--wheel", "--quiet", "--out-dir", str(out), str(checkout / folder))
        (wheel,) = out.glob(f"{distribution}-*.whl")
        built[folder] = wheel
    return built


def _packages_in(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {
            str(Path(name).parent).replace("/", ".")
            for name in archive.namelist()
            if name.endswith(".py")
        }


def _source_packages(folder: str) -> set[str]:
    base = REPO / folder
    return {
        str(path.parent.relative_to(base)).replace("/", ".")
        for path in base.rglob("*.py")
        if "__pycache__" not in path.parts
    }


def test_every_source_package_is_in_its_wheel(wheels):
    for folder, wheel in wheels.items():
        missing = _source_packages(folder) - _packages_in(wheel)
        assert not missing, f"{wheel.name} lacks {sorted(missing)}"
    assert "facesets.export.video" in _packages_in(wheels["services"])
    assert "facesets.export.report" in _packages_in(wheels["services"])


def _venv(root: Path, name: str, *requirements: str) -> Path:
    folder = root / name
    _uv("venv", "--quiet", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}", str(folder))
    python = folder / "bin" / "python"
    _uv("pip", "install", "--quiet", "--python", str(python), *requirements, timeout=900)
    return python


def _installed(python: Path) -> set[str]:
    listed = _uv("pip", "list", "--format", "json", "--python", str(python))
    return {entry["name"].lower() for entry in json.loads(listed)}


def _start(command: list[str], ready: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{command} not ready:\n{log.read_text()}"
        time.sleep(0.1)
    return process


@pytest.fixture(scope="module")
def installed(wheels, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("venvs")
    client, services, cli = (str(wheels[f]) for f in ("clients", "services", "orchestrator"))
    return {
        "client": _venv(root, "client", client),
        "cli": _venv(root, "cli", client, cli),
        "full": _venv(root, "full", client, f"{services}[cpu]", cli),
    }


# The test venvs are installed without bytecode: their processes may write it (as a user's do),
# so that each later process there does not compile every module it imports again.
NOT_PASSED = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")


def _env() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in NOT_PASSED},
        "FACESETS_MODEL_ROOT": str(SHARED),
        "FACESETS_MODEL_PACK": MODEL_PACK,
    }


def test_the_client_wheel_alone_calls_a_running_inference_service(installed, tmp_path, lfw_dir):
    held = _installed(installed["client"])
    assert not held & set(HEAVY), held & set(HEAVY)
    assert "facesets-client" in held and "facesets-services" not in held
    port = free_port()
    ready = tmp_path / "ready"
    serve = Path(installed["full"]).parent / "facesets-serve"
    process = _start(
        [str(serve), "inference", "--listen", f"127.0.0.1:{port}", "--ready-file", str(ready),
         "--allow-root", str(SHARED), "--allow-cpu-fallback"],
        ready, tmp_path / "inference.log", _env(),
    )  # fmt: skip
    photo = next(iter(lfw_people(lfw_dir, 1, 1).values()))[0]
    probe = textwrap.dedent(
        f"""
        import json
        from facesets.client import Endpoint, ImageInput, InferenceClient
        client = InferenceClient(Endpoint("127.0.0.1:{port}"))
        results = list(client.embed([ImageInput(id='probe', path={str(photo)!r})]))
        client.close()
        print(json.dumps([len(r.faces) for r in results]))
        """
    )
    try:
        done = subprocess.run(
            [str(installed["client"]), "-c", probe], capture_output=True, text=True, timeout=120
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [1]


def test_the_services_wheel_serves_all_three(installed, tmp_path):
    serve = Path(installed["full"]).parent / "facesets-serve"
    env, processes, addresses = _env(), [], {}
    try:
        for name in ("inference", "clustering", "export"):
            ready = tmp_path / f"{name}.ready"
            port = free_port()
            extra = ["--allow-cpu-fallback"] if name == "inference" else []
            if name == "export":
                extra = [
                    "--clustering",
                    addresses["clustering"],
                    "--inference",
                    addresses["inference"],
                ]
            processes.append(
                _start(
                    [
                        str(serve),
                        name,
                        "--listen",
                        f"127.0.0.1:{port}",
                        "--ready-file",
                        str(ready),
                        *extra,
                    ],
                    ready,
                    tmp_path / f"{name}.log",
                    env,
                )  # fmt: skip
            )
            addresses[name] = f"127.0.0.1:{port}"
        probe = textwrap.dedent(
            f"""
            from facesets.client import ClusteringClient, Endpoint, ExportClient, InferenceClient
            for kind, name in ((InferenceClient, "inference"), (ClusteringClient, "clustering"),
                               (ExportClient, "export")):
                client = kind(Endpoint({addresses!r}[name]))
                client.wait_ready(10)
                client.close()
            print("serving")
            """
        )
        done = subprocess.run(
            [str(installed["full"]), "-c", probe], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "serving"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_the_cli_wheel_runs_facesets_run_on_a_small_slice(installed, tmp_path, lfw_dir):
    src = tmp_path / "photos"
    for person, photos in lfw_people(lfw_dir, 2, 6, min_photos=6).items():
        for photo in photos:
            (src / person).mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo, src / person / photo.name)
    facesets = Path(installed["full"]).parent / "facesets"
    done = subprocess.run(
        [str(facesets), "run", str(src), str(tmp_path / "out"), "--min-faces", "2", "--json"],
        capture_output=True, text=True, timeout=900, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["refine"]["facesets"] >= 1, summary["refine"]
    assert sorted((tmp_path / "out" / "export").rglob("*.fsz")), "no .fsz bundle exported"


def test_the_cli_wheel_without_the_services_says_what_serve_needs(installed, tmp_path):
    held = _installed(installed["cli"])
    assert "facesets" in held and "facesets-services" not in held
    assert not held & set(HEAVY), held & set(HEAVY)
    facesets = Path(installed["cli"]).parent / "facesets"
    env = _env()
    helped = subprocess.run([str(facesets), "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0 and "refine" in helped.stdout, helped.stderr
    served = subprocess.run(
        [str(facesets), "serve", "clustering"], capture_output=True, text=True, timeout=60, env=env
    )
    assert served.returncode == 2
    assert "facesets[embedded]" in served.stderr, served.stderr
    status = subprocess.run(
        [str(facesets), "video", "status", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["planned"] is False


def test_a_venv_from_the_cpu_lock_scores_clip_without_torch(wheels, tmp_path):
    """The services installed from their lock (locks/cpu.txt) hold no torch, and ClipScore
    works end to end through the RPC on the committed tiny exported model: the probabilities
    open_clip computed for the sample images, to 1e-4."""
    checkout = wheels["clients"].parent.parent / "checkout"
    venv = tmp_path / "from-lock"
    _uv("venv", "--quiet", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}", str(venv))
    python = venv / "bin" / "python"
    _uv("pip", "install", "--quiet", "--python", str(python), "-r", "locks/cpu.txt",
        cwd=checkout, timeout=900)  # fmt: skip
    tried = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert tried.returncode != 0 and "No module named 'torch'" in tried.stderr
    check = json.loads((checkout / "tests" / "data" / "tiny-clip-check.json").read_text())
    port, ready = free_port(), tmp_path / "ready"
    process = _start(
        [str(venv / "bin" / "facesets-serve"), "inference", "--listen", f"127.0.0.1:{port}",
         "--ready-file", str(ready), "--allow-cpu-fallback",
         "--clip-dir", str(checkout / "tests" / "data" / "tiny-clip")],
        ready, tmp_path / "inference.log", _env(),
    )  # fmt: skip
    images = [str(checkout / "tests" / "data" / "tiny-clip-images" / n) for n in check["images"]]
    probe = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from facesets.client import Endpoint, ImageInput, InferenceClient
        client = InferenceClient(Endpoint("127.0.0.1:{port}"))
        paths = {images!r}
        images = [ImageInput(id=str(i), data=Path(p).read_bytes()) for i, p in enumerate(paths)]
        scores = client.clip_scores(images, {check["prompts"]!r})
        client.close()
        print(json.dumps(scores.tolist()))
        """
    )
    try:
        done = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=120
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(scores) == len(check["probabilities"])
    for got, expected in zip(scores, check["probabilities"], strict=True):
        assert got == pytest.approx(expected, abs=1e-4)
