"""`facesets doctor`: one line per check, exit 1 on an error; the ONNX Runtime install is
simulated through FACESETS_SIMULATED_ORT, a remote inference service is a real one."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MODEL_PACK, free_port

from facesets.inference.runtime import SIMULATE_ENV
from services import ServiceProcess, run_facesets

CPU = "CPUExecutionProvider"
DML = "DmlExecutionProvider"
LINE = re.compile(r"^(OK|INFO|WARN|ERROR) +.+?: .+$")


def doctor(
    model_root: Path, *flags: str, distributions: dict[str, str], providers: list[str]
) -> tuple[int, list[str]]:
    simulation = json.dumps({"distributions": distributions, "providers": providers})
    result = run_facesets(
        "doctor",
        "--model-root",
        str(model_root),
        "--model-pack",
        MODEL_PACK,
        *flags,
        env={**os.environ, SIMULATE_ENV: simulation},
        timeout=120,
    )
    lines = result.stdout.splitlines()
    assert lines and all(LINE.match(line) for line in lines), result.stdout + result.stderr
    return result.returncode, lines


def line_of(lines: list[str], name: str) -> str:
    return next(line for line in lines if line.split(None, 1)[1].startswith(f"{name}:"))


def test_doctor_all_good(model_root: Path) -> None:
    code, lines = doctor(
        model_root, distributions={"onnxruntime-directml": "1.24.4"}, providers=[DML, CPU]
    )
    assert code == 0, lines
    assert line_of(lines, "onnxruntime") == (
        "OK     onnxruntime: onnxruntime-directml 1.24.4 (one distribution)"
    )
    assert line_of(lines, "providers") == f"OK     providers: {DML}, {CPU}"
    pack = line_of(lines, "model pack")
    assert pack.startswith("OK") and "det_scrfd_2.5g_bnkps.onnx" in pack
    assert "rec_mobilefacenet.onnx" in pack
    assert line_of(lines, "insightface").startswith("OK")
    # no exported CLIP model under the sample model root: a warning with the command to make it
    clip = line_of(lines, "CLIP")
    folder = model_root / "clip" / "onnx" / "ViT-L-14--dfn2b_s39b"
    assert clip.startswith("WARN") and "`facesets occlusion` needs one" in clip
    assert f"`facesets clip export ViT-L-14 dfn2b_s39b --out {folder}`" in clip
    assert line_of(lines, "ffmpeg").split()[0] in ("OK", "WARN")
    assert not any(line.startswith("ERROR") for line in lines)


def test_doctor_directml_missing(model_root: Path) -> None:
    code, lines = doctor(
        model_root, distributions={"onnxruntime-directml": "1.24.4"}, providers=[CPU]
    )
    assert code == 1
    providers = line_of(lines, "providers")
    assert providers.startswith("ERROR")
    assert (
        "onnxruntime-directml is installed but DirectML (DmlExecutionProvider) is not offered"
        in providers
    )
    assert "install_inference.py directml" in providers


def test_doctor_two_distributions(model_root: Path) -> None:
    both = {"onnxruntime": "1.32.0", "onnxruntime-directml": "1.24.4"}
    code, lines = doctor(model_root, distributions=both, providers=[DML, CPU])
    assert code == 1
    runtime = line_of(lines, "onnxruntime")
    assert runtime.startswith("ERROR")
    assert "2 distributions installed (onnxruntime 1.32.0, onnxruntime-directml 1.24.4)" in runtime
    assert "install_inference.py directml" in runtime


def test_doctor_missing_model_pack(tmp_path: Path) -> None:
    code, lines = doctor(tmp_path, distributions={"onnxruntime": "1.32.0"}, providers=[CPU])
    assert code == 1
    pack = line_of(lines, "model pack")
    assert pack.startswith("ERROR") and str(tmp_path / "models" / MODEL_PACK) in pack


def test_doctor_checks_the_model_pack_facesets_toml_names(model_root: Path, tmp_path: Path) -> None:
    """The pack a local inference service would load, which facesets.toml may name: doctor
    checked the default (buffalo_l, an ERROR) where `embed` with the same file works."""
    config = tmp_path / "facesets.toml"
    config.write_text(f'model_root = "{model_root}"\nmodel_pack = "{MODEL_PACK}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESETS_MODEL")}
    env[SIMULATE_ENV] = json.dumps({"distributions": {"onnxruntime": "1.32.0"}, "providers": [CPU]})
    result = run_facesets("--config", str(config), "doctor", env=env, timeout=120)
    pack = line_of(result.stdout.splitlines(), "model pack")
    assert pack.startswith("OK") and str(model_root / "models" / MODEL_PACK) in pack, pack
    # A flag still wins over the file.
    flagged = run_facesets(
        "--config", str(config), "doctor", "--model-root", str(tmp_path), env=env, timeout=120
    )
    pack = line_of(flagged.stdout.splitlines(), "model pack")
    assert pack.startswith("ERROR") and str(tmp_path / "models" / MODEL_PACK) in pack, pack


@pytest.fixture
def remote_inference(tmp_path: Path, model_root: Path) -> Iterator[tuple[str, Path]]:
    token_file = tmp_path / "token.txt"
    token_file.write_text("a-long-random-test-token\n")
    service = ServiceProcess(
        "inference", free_port(), tmp_path / "inference.log", "--token-file", str(token_file)
    ).start()
    yield service.address, token_file
    service.stop()


def test_doctor_checks_a_remote_inference_service(
    tmp_path: Path, remote_inference: tuple[str, Path]
) -> None:
    address, token_file = remote_inference
    local = {"distributions": {"onnxruntime": "1.32.0"}, "providers": [CPU]}
    # No model pack here: with a remote service that is a warning, not an error.
    code, lines = doctor(tmp_path, "--inference", address, "--token-file", str(token_file), **local)
    assert code == 0, lines
    assert line_of(lines, "model pack").startswith("WARN")
    assert line_of(lines, f"inference at {address}") == (
        f"OK     inference at {address}: reachable, serving"
    )
    assert line_of(lines, "token") == "OK     token: accepted"
    remote = line_of(lines, "remote providers")
    assert remote.startswith("WARN") and f"{CPU} (onnxruntime " in remote
    assert "runs on the CPU only" in remote

    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-token")
    code, lines = doctor(tmp_path, "--inference", address, "--token-file", str(wrong), **local)
    assert code == 1
    assert line_of(lines, "token").startswith("ERROR  token: refused")

    code, lines = doctor(tmp_path, "--inference", address, **local)
    assert code == 1
    assert "needed: pass --token-file" in line_of(lines, "token")


def test_doctor_unreachable_inference_service(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    code, lines = doctor(
        tmp_path,
        "--inference",
        address,
        distributions={"onnxruntime": "1.32.0"},
        providers=[CPU],
    )
    assert code == 1
    assert line_of(lines, f"inference at {address}").startswith("ERROR")
    assert "not reachable" in line_of(lines, f"inference at {address}")
    assert not any(line.split(None, 1)[1].startswith("token:") for line in lines)


def test_doctor_reports_the_clip_folder_in_use(model_root: Path, tmp_path: Path) -> None:
    from clip_fixtures import TINY_FOLDER

    ok: dict[str, Any] = {"distributions": {"onnxruntime": "1.32.0"}, "providers": [CPU]}
    code, lines = doctor(model_root, "--clip-dir", str(TINY_FOLDER), **ok)
    assert code == 0, lines
    assert line_of(lines, "CLIP") == (
        f"OK     CLIP: facesets-small-vocab-clip / tiny-clip.pt in {TINY_FOLDER} (0.3 MB)"
    )
    # a folder cut short (no meta.json) is not taken for an export
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "image.onnx").write_bytes(b"x")
    code, lines = doctor(model_root, "--clip-dir", str(partial), **ok)
    clip = line_of(lines, "CLIP")
    assert code == 0 and clip.startswith("WARN") and f"no meta.json in {partial}" in clip
    assert f"--out {partial}`" in clip


def test_version() -> None:
    from importlib import metadata

    done = run_facesets("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"facesets {metadata.version('facesets')}"


def test_doctor_says_whether_ffmpeg_ends_with_a_killed_export_service(
    model_root: Path, tmp_path: Path
) -> None:
    """setpriv (util-linux) found: OK; a PATH without it: a warning that says what it costs."""
    import shutil
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the death signal is Linux's")
    simulation = json.dumps({"distributions": {"onnxruntime": "1.32.0"}, "providers": [CPU]})
    common = ["doctor", "--model-root", str(model_root), "--model-pack", MODEL_PACK]
    found = run_facesets(*common, env={**os.environ, SIMULATE_ENV: simulation}, timeout=120)
    assert line_of(found.stdout.splitlines(), "setpriv").startswith("OK"), found.stdout
    lean = tmp_path / "bin"
    lean.mkdir()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is not None:
        (lean / "ffmpeg").symlink_to(ffmpeg)
    env = {**os.environ, SIMULATE_ENV: simulation, "PATH": str(lean)}
    missing = run_facesets(*common, env=env, timeout=120)
    line = line_of(missing.stdout.splitlines(), "setpriv")
    assert line.startswith("WARN") and "leaves its ffmpeg to finish alone" in line, line
    assert missing.returncode == 0, missing.stdout  # a warning, not an error
