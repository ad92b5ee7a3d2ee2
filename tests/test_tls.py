"""A service with --tls-cert/--tls-key beyond loopback, and clients that trust its CA; the CA and
certificates are made here with the openssl command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from conftest import free_port

from facesets.client import ClusteringClient, Endpoint
from facesets.v1 import clustering_pb2
from services import ServiceProcess, run_facesets, wait_for

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return key, cert


def make_server_cert(
    folder: Path, ca_key: Path, ca_cert: Path, san: str = "DNS:localhost,IP:127.0.0.1"
) -> tuple[Path, Path]:
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    extensions = folder / "san.ext"
    extensions.write_text(f"subjectAltName={san}\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return key, cert


def test_tls_service_beyond_loopback_serves_clients_that_trust_its_ca(tmp_path: Path) -> None:
    ca_key, ca_cert = make_ca(tmp_path, "test-ca")
    server_key, server_cert = make_server_cert(tmp_path, ca_key, ca_cert)
    _, other_ca = make_ca(tmp_path, "other-ca")
    port = free_port()
    log = tmp_path / "clustering.log"
    service = ServiceProcess(
        "clustering", port, log, "--tls-cert", str(server_cert), "--tls-key", str(server_key)
    )
    # No token: TLS alone allows an address beyond loopback.
    service.start(listen=f"0.0.0.0:{port}", wait=False)
    store = tmp_path / "faces.db"
    # The service is starting: its client waits for it (wait_for_ready).
    trusted = ClusteringClient(Endpoint(service.address, tls_ca=ca_cert), wait_for_ready=True)
    try:

        def serving() -> bool:
            assert service.process is not None and service.process.poll() is None, log.read_text()
            try:
                return trusted.open_store(str(store)).schema_version >= 1
            except grpc.RpcError:
                return False

        wait_for(serving, 120, "the TLS service did not answer")
        assert trusted.stats(str(store)).images == 0
        # A plaintext client and a client trusting another CA get nothing.
        for endpoint in (Endpoint(service.address), Endpoint(service.address, tls_ca=other_ca)):
            stranger = ClusteringClient(endpoint)
            try:
                with pytest.raises(grpc.RpcError) as refused:
                    stranger.stub.OpenStore(
                        clustering_pb2.OpenStoreRequest(store=str(store)), timeout=5
                    )
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            finally:
                stranger.close()
        # The command line reaches it with --tls-ca.
        out = tmp_path / "clusters"
        done = run_facesets(
            "cluster",
            str(store),
            str(out),
            "--json",
            "--clustering",
            service.address,
            "--tls-ca",
            str(ca_cert),
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert (out / "manifest.json").is_file()
    finally:
        trusted.close()
        service.stop()
    assert "auth=tls" in log.read_text()
