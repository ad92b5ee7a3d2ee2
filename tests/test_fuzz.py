"""A short, deterministic fuzzing pass over every RPC of the three services (real processes on
loopback) and the decoder: one batch of generated requests per target, seed 0. `make fuzz`
runs the same targets for longer (tests/fuzzing.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from conftest import MODEL_PACK, free_port
from fuzzing import SERVICES, run_all
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facesets.v1 import inference_pb2, inference_pb2_grpc
from services import ServiceProcess

EXAMPLES_PER_TARGET = 20


def test_no_generated_request_crashes_hangs_or_leaks(
    model_root: Path, lfw_dir: Path, tmp_path: Path
) -> None:
    inference_args = ("--model-root", str(model_root), "--model-pack", MODEL_PACK)
    processes = {
        name: ServiceProcess(name, free_port(), tmp_path / f"{name}.log", *extra)
        for name, extra in (
            ("inference", (*inference_args, "--workers", "2")),
            ("clustering", ()),
            ("export", ()),
        )
    }
    starts = [threading.Thread(target=p.start) for p in processes.values()]
    for start in starts:
        start.start()
    for start in starts:
        start.join()
    try:
        # The first ClipScore looks for the exported CLIP folder (absent here): once, with time
        # to spare, so that the generated calls meet the answer it then keeps.
        with grpc.insecure_channel(processes["inference"].address) as channel:
            stub = inference_pb2_grpc.InferenceStub(channel)
            request = inference_pb2.ClipScoreRequest(prompts=["a face"])
            with pytest.raises(grpc.RpcError) as unavailable:
                list(stub.ClipScore(iter([request]), timeout=180))
        assert unavailable.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        reports = run_all(
            {name: p.address for name, p in processes.items()},
            tmp_path / "sandbox",
            lfw_dir / "George_W_Bush" / "George_W_Bush_0001.jpg",
            seconds=0,  # one batch per target
            batch=EXAMPLES_PER_TARGET,
            echo=print,
            alive=lambda: [
                n for n, p in processes.items() if p.process and p.process.poll() is not None
            ],
        )
        expected = 1 + sum(len(service.methods) for service in SERVICES.values())
        assert len(reports) == expected
        assert all(report.executions >= 1 for report in reports)
        findings = [str(finding) for report in reports for finding in report.findings]
        assert not findings, "\n".join(findings)
        for name, process in processes.items():  # each still answers after the run
            with grpc.insecure_channel(process.address) as channel:
                health = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
            assert health.status == health_pb2.HealthCheckResponse.SERVING, name
    finally:
        for process in processes.values():
            process.stop()
