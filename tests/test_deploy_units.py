"""Start-on-boot definitions: the systemd units pass `systemd-analyze verify` and each unit's
ExecStart, run in a namespace host with the config file alone, serves a client on another host;
the Windows scheduled task starts the inference service with its config."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO, free_port
from netns import Hosts, namespace_hosts
from store_fixtures import copy_photos, lfw_slice
from test_split_hosts import PEOPLE, PER_PERSON, export_contents

from services import FACESETS, run_facesets

UNITS = REPO / "deploy" / "systemd"
SERVICES = ("clustering", "export", "inference")
SERVE = Path(sys.executable).with_name("facesets-serve")
TOKEN = "unit-test-token-0123456789"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / f"facesets-{name}.service")
    return parser


def local_copy(name: str, folder: Path) -> Path:
    """The unit with its interpreter path pointed at this checkout's (verify checks that the
    ExecStart program exists)."""
    text = (UNITS / f"facesets-{name}.service").read_text()
    copy = folder / f"facesets-{name}.service"
    copy.write_text(text.replace("/opt/facesets/venv/bin/facesets-serve", str(SERVE)))
    return copy


@pytest.mark.parametrize("name", SERVICES)
def test_the_units_restart_on_failure_sandboxed_as_their_own_user(name: str) -> None:
    service = unit(name)["Service"]
    assert service["User"] == "facesets" and service["Restart"] == "on-failure"
    assert service["Type"] == "notify"  # ready once it serves (sd_notify READY=1)
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/srv/facesets"  # the example config's roots
    assert "--config /etc/facesets/facesets.toml" in service["ExecStart"]
    example = (UNITS / "facesets.toml.example").read_text()
    assert 'roots = ["/srv/facesets"]' in example
    assert "u facesets" in (UNITS / "facesets.sysusers.conf").read_text()


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (apt-get install systemd)")
    copies = [str(local_copy(name, tmp_path)) for name in SERVICES]
    done = subprocess.run(
        ["systemd-analyze", "verify", *copies], capture_output=True, text=True, timeout=120
    )
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "facesets-" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def test_each_units_exec_start_serves_a_client_on_another_host(
    tmp_path: Path, model_root: Path
) -> None:
    with namespace_hosts(2) as hosts:
        host = hosts.address(1)
        ports = {name: free_port() for name in SERVICES}
        (tmp_path / "token").write_text(TOKEN + "\n")
        server_config = tmp_path / "server.toml"
        server_config.write_text(
            "".join(f'{n}_listen = "{host}:{p}"\n' for n, p in ports.items())
            + f'inference = "{host}:{ports["inference"]}"\n'
            + f'clustering = "{host}:{ports["clustering"]}"\n'
            + f'token_file = "{tmp_path / "token"}"\n'
            + f'roots = ["{tmp_path}"]\n'
            + f'model_root = "{model_root}"\nmodel_pack = "facepack-mini"\n'
        )
        client_config = tmp_path / "client.toml"
        client_config.write_text(
            "".join(f'{n} = "{host}:{p}"\n' for n, p in ports.items())
            + f'token_file = "{tmp_path / "token"}"\n'
        )
        started: list[subprocess.Popen[bytes]] = []
        try:
            for name in SERVICES:
                command = shlex.split(unit(name)["Service"]["ExecStart"])
                command[0] = str(SERVE)
                command[command.index("--config") + 1] = str(server_config)
                log = (tmp_path / f"{name}.log").open("wb")
                started.append(
                    subprocess.Popen(
                        [*hosts.exec_prefix(1), *command], stdout=log, stderr=subprocess.STDOUT
                    )
                )
            # From host 0, with the client config alone: every service answers, the token
            # accepted.
            probe = textwrap.dedent(
                f"""
                from pathlib import Path
                from facesets.client import (
                    ClusteringClient, Endpoint, ExportClient, InferenceClient,
                )
                from facesets.shared.config import Config
                config = Config.load(Path({str(client_config)!r}))
                token = Path(config.get("token_file"))
                for name, kind in (("clustering", ClusteringClient), ("export", ExportClient),
                                   ("inference", InferenceClient)):
                    client = kind(Endpoint(config.get(name), token_file=token), wait_for_ready=True)
                    client.wait_ready(180)
                    print(name, "serving")
                store = ClusteringClient(Endpoint(config.get("clustering"), token_file=token))
                print("store", store.open_store({str(tmp_path / "faces.db")!r}).schema_version)
                inference = InferenceClient(Endpoint(config.get("inference"), token_file=token))
                print("pack", inference.info().model_pack)
                """
            )
            done = subprocess.run(
                [*hosts.exec_prefix(0), sys.executable, "-c", probe],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            logs = "\n".join((tmp_path / f"{n}.log").read_text() for n in SERVICES)
            assert done.returncode == 0, done.stderr + logs
            for name in SERVICES:
                assert f"{name} serving" in done.stdout
            assert "pack facepack-mini" in done.stdout
            # The command on host 0 with only --config.
            check = subprocess.run(
                [*hosts.exec_prefix(0), *FACESETS, "--config", str(client_config),
                 "store", "check", str(tmp_path / "faces.db")],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert check.returncode == 0, check.stderr
        finally:
            for process in started:
                process.terminate()
            for process in started:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def test_the_windows_task_starts_inference_with_its_config_and_restarts_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "facesets.toml"
    config.write_text('inference_listen = "0.0.0.0:50051"\ntoken_file = "token"\n')
    done = run_facesets(
        "--config", str(config), "serve", "inference", "--install-task", "-", timeout=60
    )
    assert done.returncode == 0, done.stderr
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    task = ET.fromstring(done.stdout.split("?>", 1)[1])
    assert task.find("t:Triggers/t:LogonTrigger/t:Enabled", ns).text == "true"  # type: ignore[union-attr]
    restart = task.find("t:Settings/t:RestartOnFailure", ns)
    assert restart is not None and restart.find("t:Count", ns).text == "999"  # type: ignore[union-attr]
    assert task.find("t:Settings/t:ExecutionTimeLimit", ns).text == "PT0S"  # type: ignore[union-attr]
    assert task.find("t:Settings/t:DisallowStartIfOnBatteries", ns).text == "false"  # type: ignore[union-attr]
    command = task.find("t:Actions/t:Exec/t:Command", ns).text  # type: ignore[union-attr]
    arguments = task.find("t:Actions/t:Exec/t:Arguments", ns).text  # type: ignore[union-attr]
    assert Path(str(command)).name.startswith("python")
    assert arguments == f"-m facesets.serve --config {config.resolve()} inference"
    # At boot instead, and written to a file as Task Scheduler reads it (UTF-16).
    out = tmp_path / "task.xml"
    written = run_facesets(
        "--config", str(config), "serve", "inference", "--install-task", str(out),
        "--task-trigger", "boot", timeout=60,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert "schtasks /Create" in written.stdout
    text = out.read_text(encoding="utf-16")
    assert "<BootTrigger>" in text and "<LogonType>Password</LogonType>" in text
    # Registering needs Windows: elsewhere it says so.
    if sys.platform != "win32":
        refused = run_facesets("serve", "inference", "--install-task", timeout=60)
        assert refused.returncode != 0 and "needs Windows" in refused.stderr


WAIT_ALL = """
import sys
from pathlib import Path
from facesets.client import ClusteringClient, Endpoint, ExportClient, InferenceClient
from facesets.shared.config import Config
config = Config.load(Path(sys.argv[1]))
token = Path(config.get("token_file"))
for name, kind in (("clustering", ClusteringClient), ("export", ExportClient),
                   ("inference", InferenceClient)):
    kind(Endpoint(config.get(name), token_file=token), wait_for_ready=True).wait_ready(180)
"""


def _route_through_host_0(hosts: Hosts, count: int) -> None:
    """Hosts 1..count-1 reach each other through host 0 (each is wired to host 0 only)."""
    subprocess.run(
        [*hosts.exec_prefix(0), "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=30
    )
    for i in range(1, count):
        subprocess.run(
            ["ip", "-n", hosts.names[i], "route", "add", "10.77.0.0/16", "via", f"10.77.{i}.2"],
            check=True, timeout=30,
        )  # fmt: skip


def _start_unit(
    hosts: Hosts, host: int, name: str, config: Path, log: Path
) -> subprocess.Popen[bytes]:
    command = shlex.split(unit(name)["Service"]["ExecStart"])
    command[0] = str(SERVE)
    command[command.index("--config") + 1] = str(config)
    with log.open("wb") as out:
        return subprocess.Popen(
            [*hosts.exec_prefix(host), *command], stdout=out, stderr=subprocess.STDOUT
        )


@pytest.fixture(scope="module")
def photos(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("photos")
    copy_photos(lfw_slice(lfw_dir, PEOPLE, PER_PERSON), src)
    return src


@pytest.fixture(scope="module")
def one_host(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The export of `facesets run` with every service on this host, started by the command."""
    out = tmp_path_factory.mktemp("one-host")
    done = run_facesets("run", str(photos), str(out), "--min-faces", "3", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    return export_contents(out)


@pytest.mark.slow
def test_a_household_from_config_files_alone_exports_as_one_host_does(
    photos: Path, one_host: dict[str, str], tmp_path: Path, model_root: Path
) -> None:
    """Inference on host 1, clustering and export on host 2, each from its unit's ExecStart and
    a config file; `facesets --config FILE run` on host 0 with no address flag."""
    with namespace_hosts(3) as hosts:
        _route_through_host_0(hosts, 3)
        a, b = hosts.address(1), hosts.address(2)
        ports = {name: free_port() for name in SERVICES}
        (tmp_path / "token").write_text(TOKEN + "\n")
        shared = (
            f'token_file = "{tmp_path / "token"}"\nroots = ["{photos}", "{tmp_path}"]\n'
            f'inference = "{a}:{ports["inference"]}"\nclustering = "{b}:{ports["clustering"]}"\n'
        )
        host_a = tmp_path / "host-a.toml"
        host_a.write_text(
            shared + f'inference_listen = "{a}:{ports["inference"]}"\n'
            f'model_root = "{model_root}"\nmodel_pack = "facepack-mini"\n'
        )
        host_b = tmp_path / "host-b.toml"
        host_b.write_text(
            shared + f'clustering_listen = "{b}:{ports["clustering"]}"\n'
            f'export_listen = "{b}:{ports["export"]}"\n'
        )
        client = tmp_path / "client.toml"
        client.write_text(shared + f'export = "{b}:{ports["export"]}"\n')
        started = [
            _start_unit(hosts, 1, "inference", host_a, tmp_path / "inference.log"),
            _start_unit(hosts, 2, "clustering", host_b, tmp_path / "clustering.log"),
            _start_unit(hosts, 2, "export", host_b, tmp_path / "export.log"),
        ]
        try:
            # As systemd's ordering would: the command runs once the three serve.
            waited = subprocess.run(
                [*hosts.exec_prefix(0), sys.executable, "-c", WAIT_ALL, str(client)],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            logs = "\n".join((tmp_path / f"{n}.log").read_text() for n in SERVICES)
            assert waited.returncode == 0, waited.stderr + logs
            out = tmp_path / "out"
            done = subprocess.run(
                [*hosts.exec_prefix(0), *FACESETS, "--config", str(client),
                 "run", str(photos), str(out), "--min-faces", "3", "--json"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            logs = "\n".join((tmp_path / f"{n}.log").read_text() for n in SERVICES)
            assert done.returncode == 0, done.stderr + logs
            assert export_contents(out) == one_host
            # Every service was one of the three (none started locally by the command).
            assert "serving" in (tmp_path / "export.log").read_text()
        finally:
            for process in started:
                process.terminate()
            for process in started:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
