"""Loopback by default; anything else needs a token, which is checked and never logged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from conftest import free_port

from facesets.client import ClusteringClient, Endpoint
from facesets.clustering.store import SCHEMA_VERSION
from facesets.common.security import InsecureListenError, check_listen_policy, is_loopback
from facesets.v1 import clustering_pb2
from services import FACESETS, ServiceProcess

TOKEN = "s3cret-token-4242-do-not-log"


def test_listen_policy():
    assert is_loopback("127.0.0.1:50051") and is_loopback("[::1]:1") and is_loopback("localhost:1")
    assert not is_loopback("0.0.0.0:50051") and not is_loopback("192.168.1.4:1")
    check_listen_policy("127.0.0.1:1", None, None)
    check_listen_policy("0.0.0.0:1", "token", None)
    with pytest.raises(InsecureListenError):
        check_listen_policy("0.0.0.0:1", None, None)


def test_serve_refuses_open_address_without_token():
    done = subprocess.run(
        [
            *FACESETS,
            "serve",
            "clustering",
            "--listen",
            f"0.0.0.0:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--token-file" in done.stderr


def test_token_is_required_and_never_logged(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    log = tmp_path / "service.log"
    service = ServiceProcess("clustering", port, log, "--token-file", str(token_file))
    service.start(listen=f"0.0.0.0:{port}")
    store = str(tmp_path / "faces.db")
    try:
        anonymous = ClusteringClient(Endpoint(service.address))
        with pytest.raises(grpc.RpcError) as caught:
            anonymous.stub.OpenStore(clustering_pb2.OpenStoreRequest(store=store), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        wrong = ClusteringClient(Endpoint(service.address, token="wrong"))
        with pytest.raises(grpc.RpcError) as caught:
            wrong.stats(store)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        trusted = ClusteringClient(Endpoint(service.address, token=TOKEN))
        assert trusted.open_store(store).schema_version == SCHEMA_VERSION
        assert trusted.stats(store).images == 0
        for client in (anonymous, wrong, trusted):
            client.close()
    finally:
        service.stop()
    text = log.read_text()
    assert "serving" in text and "auth=token" in text
    assert TOKEN not in text


def test_a_token_file_that_cannot_be_read_is_named_with_why(tmp_path: Path) -> None:
    """Before any connection: a missing token file and a folder named as one."""
    for named, why in ((tmp_path / "absent", "No such file"), (tmp_path, "Is a directory")):
        done = subprocess.run(
            [*FACESETS, "embed", str(tmp_path), str(tmp_path / "s.db"), "--token-file", str(named),
             "--clustering", "127.0.0.1:9", "--inference", "127.0.0.1:9"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"cannot read the token file {named}: {why}" in done.stderr, done.stderr
