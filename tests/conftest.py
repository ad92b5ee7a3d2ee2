"""Shared fixtures: the sample data and model pack in ../shared, free loopback ports."""

from __future__ import annotations

import itertools
import math
import os
import socket
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import onnxruntime

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACESETS_SHARED", REPO.parent / "shared")).resolve()
MODEL_ROOT = SHARED / "models"
MODEL_PACK = "facepack-mini"


def reference_session_options() -> onnxruntime.SessionOptions:
    """ONNX Runtime options for the tests' own reference models (insightface in the test
    process): one thread per model call, as the inference service runs them
    (`runtime.intra_op_threads`). The default pool spins its idle threads between calls, which
    doubled the CPU of every reference photo (220 against 104 ms on the 2-core machine)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return options


LFW = SHARED / "data" / "lfw"
ARTIFACTS = REPO / "test-artifacts"


NO_SAMPLE_DATA = "FACESETS_NO_SAMPLE_DATA"


def missing_sample_data() -> list[Path]:
    """The parts of the sample data the suite needs that are not there."""
    return [p for p in (MODEL_ROOT / MODEL_PACK, LFW) if not p.is_dir()]


def pytest_sessionstart(session: pytest.Session) -> None:
    # Without the sample data almost every test would skip and the run would look green.
    missing = missing_sample_data()
    if missing and os.environ.get(NO_SAMPLE_DATA) != "1":
        pytest.exit(
            "the sample data the tests run on is missing: "
            + ", ".join(str(p) for p in missing)
            + f". Put the sample folder at {SHARED} (models/{MODEL_PACK}/ and data/lfw/), "
            "or point FACESETS_SHARED at it; "
            f"{NO_SAMPLE_DATA}=1 runs only the tests that need no sample data.",
            returncode=3,
        )


def pytest_configure(config: pytest.Config) -> None:
    # Services started by tests read the mini pack unless a test says otherwise.
    os.environ.setdefault("FACESETS_MODEL_ROOT", str(SHARED))
    os.environ.setdefault("FACESETS_MODEL_PACK", MODEL_PACK)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if missing_sample_data():
        pytest.skip(f"sample data not found at {SHARED} ({NO_SAMPLE_DATA}=1)")
    return SHARED


@pytest.fixture(scope="session")
def lfw_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "lfw"


@pytest.fixture(scope="session")
def model_root(shared_dir: Path) -> Path:
    """The root to pass as --model-root (InsightFace layout: ROOT/models/PACK)."""
    return shared_dir


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def module_services(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The three services, started once for a module whose commands' own start-up is not what
    it tests (they may use every temporary folder and the sample data)."""
    from services import running_services  # services.py imports this module

    roots = [tmp_path_factory.getbasetemp(), shared_dir]
    with running_services(tmp_path_factory.mktemp("services"), roots) as started:
        yield started


@pytest.fixture(scope="module")
def module_clustering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """`--clustering HOST:PORT` of one clustering service started once for the module."""
    from services import started_service

    with started_service("clustering", tmp_path_factory.mktemp("clustering")) as service:
        yield ["--clustering", service.address]


# Test ports lie below the kernel's ephemeral range (32768 on): a port that bind(0) hands to
# one test can be handed again to another worker's service binding port 0 before the first
# test's service binds it. Each xdist worker draws from its own block, one port after another
# from a random start, so workers never pick alike and a worker never picks a port twice.
PORT_BLOCK = 2000
PORT_BASE = 20000
PORT_BLOCKS = (32768 - PORT_BASE) // PORT_BLOCK
_ports: list[Iterator[int]] = []  # this worker's port numbers, made on first use


def _bindable(port: int) -> bool:
    families = [(socket.AF_INET, "0.0.0.0")]
    if socket.has_ipv6:
        families.append((socket.AF_INET6, "::"))
    for family, host in families:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port no process listens on, for a service the test starts (see PORT_BLOCK)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = PORT_BASE + (int(worker) if worker.isdigit() else 0) % PORT_BLOCKS * PORT_BLOCK
    if not _ports:
        _ports.append(itertools.count(int.from_bytes(os.urandom(2), "big")))
    for _ in range(PORT_BLOCK):
        port = base + next(_ports[0]) % PORT_BLOCK
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {base}..{base + PORT_BLOCK - 1}")


def lfw_people(
    lfw: Path, people: int, per_person: int, min_photos: int = 2
) -> dict[str, list[Path]]:
    """The first `people` folders (sorted) holding at least `min_photos` photos."""
    chosen: dict[str, list[Path]] = {}
    for folder in sorted(p for p in lfw.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= min_photos:
            chosen[folder.name] = photos[:per_person]
        if len(chosen) == people:
            break
    return chosen


# Modules that take the longest (10 s or more): `make test` runs the slowest first, so that
# its workers (pytest-xdist, whole modules each) end together instead of one waiting on a long
# module picked up last. A full run records each module's seconds in pytest's
# cache (.pytest_cache) and later runs order by them, longest first; this list orders a run
# with no record. Order only; a module missing here still runs.
SLOW_MODULES = (
    "test_user_paths_cli.py",
    "test_restart.py",
    "test_review_app.py",
    "test_report_scale.py",
    "test_export_core.py",
    "test_age_lfw.py",
    "test_fuzz.py",
    "test_split_hosts.py",
    "test_replicas.py",
    "test_job_restart.py",
    "test_immich_people.py",
    "test_readme_promises.py",
    "test_distributions.py",
    "test_identity_workflows.py",
    "test_embed.py",
    "test_photo_formats.py",
    "test_video.py",
    "test_run.py",
    "test_report_freshness.py",
    "test_deploy_units.py",
    "test_dedup_optimize.py",
    "test_signals.py",
    "test_age.py",
    "test_immich_import.py",
    "test_linkage.py",
    "test_replicas_dns.py",
    "test_clip_score.py",
    "test_import_folders_bystanders.py",
    "test_separate_services.py",
    "test_review_consolidate.py",
    "test_cli_jobs.py",
    "test_immich_stage.py",
    "test_neighbours.py",
    "test_inference_startup.py",
    "test_empty_result.py",
    "test_doctor.py",
    "test_locks.py",
    "test_race_free_open.py",
    "test_sharpness.py",
    "test_job_parameters.py",
    "test_store_identity.py",
    "test_connection_failures.py",
    "test_inference.py",
)
MODULE_SECONDS = "facesets/module_seconds"  # pytest cache key: {module file name: seconds}


def _module_order(config: pytest.Config) -> dict[str, float]:
    """Sort keys per module, lower first: minus the recorded seconds when a full run recorded
    them (a module it did not see, a new one, goes first), else the rank in SLOW_MODULES."""
    cache = getattr(config, "cache", None)  # none under -p no:cacheprovider
    recorded = cache.get(MODULE_SECONDS, None) if cache is not None else None
    if isinstance(recorded, dict) and recorded:
        return defaultdict(lambda: -math.inf, {str(k): -float(v) for k, v in recorded.items()})
    return defaultdict(lambda: float(len(SLOW_MODULES)), {n: i for i, n in enumerate(SLOW_MODULES)})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    order = _module_order(config)
    items.sort(key=lambda item: order[item.path.name])  # stable: file order kept


_seconds: dict[str, float] = defaultdict(float)


def _full_run(config: pytest.Config) -> bool:
    """The whole suite, as `make test` runs it: only such a run's times replace the record."""
    return (
        config.args_source == pytest.Config.ArgsSource.TESTPATHS
        and not config.option.keyword
        and not config.option.markexpr
        and not hasattr(config, "workerinput")  # the xdist controller (or a plain run) records
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # setup + call + teardown of every test, module fixtures included (in its first setup).
    _seconds[Path(report.nodeid.split("::")[0]).name] += report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    cache = getattr(config, "cache", None)
    if cache is not None and _full_run(config) and exitstatus == 0 and _seconds:
        cache.set(MODULE_SECONDS, {k: round(v, 2) for k, v in sorted(_seconds.items())})


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB file system (a tmpfs, mounted as root) at tmp_path/disk: a few files fill it.
    `grow` makes it bigger. Skipped where no tmpfs can be mounted."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def grow(disk: Path, size: str) -> None:
    """The small disk, `size` big now (tmpfs sizes: 64m, 1g)."""
    import subprocess

    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)
