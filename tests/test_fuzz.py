"""A short, deterministic fuzzing pass over every RPC of the three services (real processes on
loopback, allowed one root) and the decoder: one batch of generated requests per target, seed 0;
then the planted mode, one batch of hostile export folders and stores per maintenance, report,
export and clustering RPC, after each of which nothing outside the root may have changed.
`make fuzz` runs the same targets for longer (tests/fuzzing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fuzz_planted import PlantedSetup, prepare
from fuzzing import (
    SERVICES,
    RequestStrategies,
    planted_targets,
    run_all,
    run_planted,
    start_services,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import ServiceProcess

EXAMPLES_PER_TARGET = 20
PLANTED_EXAMPLES_PER_TARGET = 10
# Planted targets expected to fail, each with its reason (none: every target holds).
KNOWN_OPEN: dict[str, str] = {}

PHOTO = Path("George_W_Bush") / "George_W_Bush_0001.jpg"


@pytest.fixture(scope="module")
def fuzzed(
    tmp_path_factory: pytest.TempPathFactory, shared_dir: Path
) -> Iterator[tuple[Path, dict[str, ServiceProcess]]]:
    work = tmp_path_factory.mktemp("fuzz")
    processes = start_services(work, shared_dir)  # also waits out ClipScore's first answer
    try:
        yield work, processes
    finally:
        for process in processes.values():
            process.stop()


@pytest.fixture(scope="module")
def planted(fuzzed, lfw_dir: Path) -> PlantedSetup:
    work, processes = fuzzed
    return prepare(
        work / "root", work / "outside", lfw_dir / PHOTO, processes["clustering"].address
    )


def _dead(processes: dict[str, ServiceProcess]) -> list[str]:
    return [n for n, p in processes.items() if p.process and p.process.poll() is not None]


def _serving(processes: dict[str, ServiceProcess]) -> None:
    for name, process in processes.items():  # each still answers after the run
        with grpc.insecure_channel(process.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING, name


def test_requests_of_every_rpc_build_with_each_number_in_its_fields_range() -> None:
    """The fuzzer itself: 100 requests per RPC build (a uint32 field once drew -1 and the
    inference targets crashed before sending anything)."""
    strategies = RequestStrategies(st.just("/nowhere"), st.binary(max_size=8))
    failed = []
    for service in SERVICES.values():
        for method in service.methods:

            @settings(
                max_examples=100,
                database=None,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(strategies.message(method.input_type))
            def build(message) -> None:
                message.SerializeToString()

            try:
                build()
            except ValueError as error:
                failed.append(f"{method.full_name}: {error}")
    assert not failed, failed


def test_no_generated_request_crashes_hangs_or_leaks(fuzzed, lfw_dir: Path) -> None:
    work, processes = fuzzed
    reports = run_all(
        {name: p.address for name, p in processes.items()},
        work / "root" / "sandbox",
        lfw_dir / PHOTO,
        seconds=0,  # one batch per target
        batch=EXAMPLES_PER_TARGET,
        echo=print,
        alive=lambda: _dead(processes),
    )
    expected = 1 + sum(len(service.methods) for service in SERVICES.values())
    assert len(reports) == expected
    assert all(report.executions >= 1 for report in reports)
    # The inference targets ran too (building their requests once crashed the fuzzer).
    assert {r.target for r in reports} >= {
        f"inference.{m.name}" for m in SERVICES["inference"].methods
    }
    findings = [str(finding) for report in reports for finding in report.findings]
    assert not findings, "\n".join(findings)
    _serving(processes)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(
            f"{service}.{method.name}",
            marks=[pytest.mark.xfail(reason=KNOWN_OPEN[f"{service}.{method.name}"])]
            if f"{service}.{method.name}" in KNOWN_OPEN
            else [],
        )
        for service, method in planted_targets()
    ],
)
def test_planted_files_change_nothing_outside_the_root(fuzzed, planted, target: str) -> None:
    _, processes = fuzzed
    service, name = target.split(".")
    method = SERVICES[service].methods_by_name[name]
    report = run_planted(
        processes[service].address,
        service,
        method,
        planted,
        seconds=0,
        batch=PLANTED_EXAMPLES_PER_TARGET,
        alive=lambda: _dead(processes),
    )
    print(f"{report.target}: {report.executions} runs, {len(report.findings)} finding(s)")
    assert report.executions == PLANTED_EXAMPLES_PER_TARGET
    findings = [str(finding) for finding in report.findings]
    assert not findings, "\n".join(findings)
