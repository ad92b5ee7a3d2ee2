"""`facesets serve inference` at start: the providers it chooses, and a missing accelerator.

The ONNX Runtime install is simulated through FACESETS_SIMULATED_ORT (what the probe reports);
the sessions still run on the onnxruntime installed here, the CPU one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from conftest import REPO, free_port

from facesets.client import Endpoint, InferenceClient
from facesets.inference.runtime import SIMULATE_ENV, OrtInstall
from facesets.inference.session import choose_providers
from facesets.orchestrator.connect import ServiceOptions, Services
from facesets.orchestrator.local import ServiceStartError
from facesets.v1 import inference_pb2
from services import ServiceProcess, run_facesets

CPU = "CPUExecutionProvider"
DML = "DmlExecutionProvider"
CUDA = "CUDAExecutionProvider"
FIX_DIRECTML = shlex.join(
    [sys.executable, str(REPO / "scripts" / "install_inference.py"), "directml"]
)


def simulated(distributions: dict[str, str], providers: list[str], version: str = "") -> str:
    return json.dumps({"distributions": distributions, "providers": providers, "version": version})


def env_with(simulation: str) -> dict[str, str]:
    return {**os.environ, SIMULATE_ENV: simulation}


def serve_until_exit(*flags: str, simulation: str) -> tuple[int, str]:
    result = run_facesets(
        "serve",
        "inference",
        "--listen",
        f"127.0.0.1:{free_port()}",
        *flags,
        env=env_with(simulation),
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


def info_of(service: ServiceProcess) -> inference_pb2.ModelInfo:
    client = InferenceClient(Endpoint(service.address))
    try:
        return client.info()
    finally:
        client.close()


def test_serve_refuses_when_directml_is_asked_for_and_missing(model_root: Path) -> None:
    code, output = serve_until_exit(
        "--providers", "dml,cpu", simulation=simulated({"onnxruntime": "1.32.0"}, [CPU])
    )
    assert code != 0
    assert "DirectML (DmlExecutionProvider) was asked for first" in output
    assert "onnxruntime-directml, which brings DirectML, is not installed" in output
    assert f"Fix the install with:\n    {FIX_DIRECTML}\n" in output
    assert "--allow-cpu-fallback" in output
    assert "serving" not in output


def test_serve_refuses_two_distributions_by_default(model_root: Path) -> None:
    both = {"onnxruntime": "1.32.0", "onnxruntime-directml": "1.24.4"}
    code, output = serve_until_exit(simulation=simulated(both, [CPU], "1.32.0"))
    assert code != 0
    assert "DirectML (DmlExecutionProvider) was asked for first" in output
    assert (
        "2 ONNX Runtime distributions are installed (onnxruntime 1.32.0, onnxruntime-directml "
        "1.24.4); they overwrite each other's files" in output
    )
    assert FIX_DIRECTML in output


def test_serve_refuses_when_the_models_do_not_load_on_the_accelerator(model_root: Path) -> None:
    # The probe says DirectML is there; the real onnxruntime puts the sessions on the CPU.
    code, output = serve_until_exit(
        simulation=simulated({"onnxruntime-directml": "1.24.4"}, [DML, CPU])
    )
    assert code != 0
    assert "is listed by ONNX Runtime, but the models were loaded on CPUExecutionProvider" in output
    assert FIX_DIRECTML in output


def test_cpu_fallback_runs_and_getinfo_reports_what_is_installed(
    tmp_path: Path, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = {"onnxruntime": "1.32.0", "onnxruntime-directml": "1.24.4"}
    monkeypatch.setenv(SIMULATE_ENV, simulated(both, [CPU], "1.32.0"))
    log = tmp_path / "inference.log"
    service = ServiceProcess("inference", free_port(), log, "--allow-cpu-fallback").start()
    try:
        info = info_of(service)
    finally:
        service.stop()
    assert list(info.providers) == [CPU]
    assert info.onnxruntime_distribution == "onnxruntime"
    assert info.onnxruntime_version == "1.32.0"
    assert list(info.onnxruntime_distributions) == [
        "onnxruntime==1.32.0",
        "onnxruntime-directml==1.24.4",
    ]
    text = log.read_text()
    assert "running on the CPU: the accelerator asked for is not available" in text
    assert "2 ONNX Runtime distributions are installed" in text


def test_plain_serve_runs_on_the_cpu_of_a_cpu_install(tmp_path: Path, model_root: Path) -> None:
    """No --providers and the plain onnxruntime: nothing asks for an accelerator."""
    log = tmp_path / "inference.log"
    service = ServiceProcess("inference", free_port(), log).start()
    try:
        info = info_of(service)
    finally:
        service.stop()
    assert list(info.providers) == [CPU]
    assert info.onnxruntime_distribution == "onnxruntime"
    assert info.onnxruntime_version == ort.__version__
    assert list(info.onnxruntime_distributions) == [f"onnxruntime=={ort.__version__}"]
    assert CPU in info.available_providers
    text = log.read_text()
    assert "execution providers chosen" in text and "wanted=None" in text
    assert "running on the CPU" not in text


def test_start_logs_the_providers_chosen_and_the_fallback_order(
    tmp_path: Path, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DirectML asked for first and missing: CUDA next, and the CPU where CUDA does not load."""
    monkeypatch.setenv(SIMULATE_ENV, simulated({"onnxruntime-gpu": "1.31.1"}, [CUDA, CPU]))
    log = tmp_path / "inference.log"
    flags = ("--providers", "dml,cuda,cpu", "--allow-cpu-fallback")
    service = ServiceProcess("inference", free_port(), log, *flags).start()
    try:
        info = info_of(service)
    finally:
        service.stop()
    lines = log.read_text().splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    missing = first("provider unavailable")
    assert "provider=DmlExecutionProvider" in lines[missing]
    assert "using=CUDAExecutionProvider" in lines[first("using the next one")]
    chosen = first("execution providers chosen")
    assert "chosen=['CUDAExecutionProvider', 'CPUExecutionProvider']" in lines[chosen]
    assert "wanted=DmlExecutionProvider" in lines[chosen]
    in_use = first("execution providers in use")
    assert "providers=['CPUExecutionProvider']" in lines[in_use]
    assert missing < chosen < in_use < first("serving")
    # GetInfo: what the sessions use, not what was asked for.
    assert list(info.providers) == [CPU]
    assert list(info.available_providers) == [CUDA, CPU]


def _args(providers: str | None) -> argparse.Namespace:
    return argparse.Namespace(
        inference=None,
        model_root=None,
        model_pack=None,
        providers=providers,
        token_file=None,
        tls_ca=None,
    )


def test_embedded_default_runs_on_the_cpu_quietly(
    model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An accelerator build that offers no GPU: the command's own service takes the CPU."""
    monkeypatch.setenv(SIMULATE_ENV, simulated({"onnxruntime-gpu": "1.31.1"}, [CPU]))
    with Services(ServiceOptions.from_args(_args(None))) as services:
        info = services.inference().info()
    assert list(info.providers) == [CPU]
    with (
        Services(ServiceOptions.from_args(_args("cuda,cpu"))) as services,
        pytest.raises(ServiceStartError) as raised,
    ):
        services.inference()
    assert "CUDA (CUDAExecutionProvider) was asked for first" in str(raised.value)


def test_choice_all_good_and_the_loaded_distribution() -> None:
    good = OrtInstall((("onnxruntime-directml", "1.24.4"),), (DML, CPU), "1.24.4")
    choice = choose_providers(None, good)
    assert choice.chosen == (DML, CPU)
    assert choice.wanted is not None and choice.wanted.provider == DML
    assert choice.problem == ""
    assert choice.check_in_use([DML, CPU]) == ""
    assert "were loaded on CPUExecutionProvider" in choice.check_in_use([CPU])
    assert good.loaded_distribution == "onnxruntime-directml"
    clobbered = OrtInstall(
        (("onnxruntime", "1.24.4"), ("onnxruntime-directml", "1.24.4")), (DML, CPU), "1.24.4"
    )
    assert clobbered.loaded_distribution == "onnxruntime-directml"
    cpu = OrtInstall((("onnxruntime", "1.32.0"),), (CPU,), "1.32.0")
    assert choose_providers(None, cpu).problem == ""
    assert choose_providers(("cpu",), cpu).wanted is None
    with pytest.raises(ValueError, match="unknown provider 'tpu'"):
        choose_providers(("tpu",), cpu)
