"""The split deployment across real hosts: network namespaces joined by veth pairs.

Inference runs on host 1 (10.77.1.1), beyond loopback with a token or TLS; `facesets run` runs
on host 0, which starts its own clustering and export services. The facesets and crops equal
those of a run on one host.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from netns import Hosts, namespace_hosts
from store_fixtures import copy_photos, lfw_slice
from test_tls import make_ca, make_server_cert

from facesets.contract import layout
from services import FACESETS, ServiceProcess, run_facesets

pytestmark = pytest.mark.slow

PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")
PER_PERSON = 5
TOKEN = "split-hosts-token-0123456789"


@pytest.fixture(scope="module")
def photos(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("photos")
    copy_photos(lfw_slice(lfw_dir, PEOPLE, PER_PERSON), src)
    return src


@pytest.fixture(scope="module")
def one_host(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The export of `facesets run` with every service on this host."""
    out = tmp_path_factory.mktemp("one-host")
    done = run_facesets("run", str(photos), str(out), "--min-faces", "3", "--json")
    assert done.returncode == 0, done.stderr
    return export_contents(out)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    with namespace_hosts(2) as made:
        yield made


def export_contents(out: Path) -> dict[str, str]:
    """Every faceset's crops (and rejected crops), by path inside the export: their SHA-256."""
    export = out / "export"
    files = sorted(export.glob(f"faceset_*/{layout.CROPS_DIR}/*")) + sorted(
        export.glob("faceset_*/_rejected/*")
    )
    contents = {
        str(p.relative_to(export)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }
    manifest = json.loads((export / "manifest.json").read_text())
    contents["facesets"] = str(len(manifest["facesets"]))
    return contents


def run_on_host(hosts: Hosts, host: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*hosts.exec_prefix(host), *FACESETS, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def inference_on_host(hosts: Hosts, host: int, folder: Path, *extra: str) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(
        "inference", port, folder / f"inference-{host}.log", *extra,
        host=hosts.address(host), prefix=hosts.exec_prefix(host),
    )  # fmt: skip


def test_run_on_one_host_with_inference_on_another_behind_a_token(
    hosts: Hosts, photos: Path, one_host: dict[str, str], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    inference = inference_on_host(hosts, 1, tmp_path, "--token-file", str(token)).start()
    try:
        out = tmp_path / "out"
        # Without the token the remote service refuses, and says so.
        refused = run_on_host(
            hosts, 0, "embed", str(photos), str(tmp_path / "x.db"), "--inference", inference.address
        )
        assert refused.returncode != 0
        assert "UNAUTHENTICATED" in refused.stderr
        # The README's command: the export service it starts carries the token too.
        done = run_on_host(
            hosts, 0, "run", str(photos), str(out), "--min-faces", "3", "--json",
            "--inference", inference.address, "--token-file", str(token),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert export_contents(out) == one_host
        assert TOKEN not in done.stdout + done.stderr
    finally:
        inference.stop()
    assert TOKEN not in inference.log_path.read_text()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_run_on_one_host_with_inference_on_another_over_tls(
    hosts: Hosts, photos: Path, one_host: dict[str, str], tmp_path: Path
) -> None:
    ca_key, ca_cert = make_ca(tmp_path, "split-ca")
    key, cert = make_server_cert(tmp_path, ca_key, ca_cert, san=f"IP:{hosts.address(1)}")
    inference = inference_on_host(
        hosts, 1, tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)
    ).start()
    try:
        out = tmp_path / "out"
        done = run_on_host(
            hosts, 0, "run", str(photos), str(out), "--min-faces", "3", "--json",
            "--inference", inference.address, "--tls-ca", str(ca_cert),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert export_contents(out) == one_host
    finally:
        inference.stop()
