"""Five wrong set-ups each end within 10 s with their cause and the fix: a TLS service reached
without its CA, a refused connection, a wrong token, a name that does not resolve, and an HTTP/1
server on the port; through the client library and through the `facesets` command."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port

from facesets.client import (
    ClusteringClient,
    ConnectionProblem,
    Endpoint,
    InferenceClient,
    ServiceUnavailableError,
)
from services import ServiceProcess, run_facesets

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
LIMIT_S = 10.0
TOKEN = "the-right-token"


@dataclass
class WrongSetups:
    tls: str  # a TLS clustering service
    token: str  # a clustering service behind TOKEN
    http: str  # an HTTP/1 server
    refused: str  # a port nothing listens on
    unresolved: str  # a name that does not resolve
    ca: Path
    folder: Path


@pytest.fixture(scope="module")
def setups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WrongSetups]:
    from test_tls import make_ca, make_server_cert

    folder = tmp_path_factory.mktemp("wrong-setups")
    ca_key, ca_cert = make_ca(folder, "ca")
    key, cert = make_server_cert(folder, ca_key, ca_cert)
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    tls = ServiceProcess(
        "clustering",
        free_port(),
        folder / "tls.log",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    guarded = ServiceProcess(
        "clustering", free_port(), folder / "token.log", "--token-file", str(token_file)
    )
    http_server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler
    )
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    tls.start(), guarded.start()
    try:
        yield WrongSetups(
            tls=f"localhost:{tls.port}",
            token=guarded.address,
            http=f"127.0.0.1:{http_server.server_address[1]}",
            refused=f"127.0.0.1:{free_port()}",
            unresolved=f"no-such-host.invalid:{free_port()}",
            ca=ca_cert,
            folder=folder,
        )
    finally:
        http_server.shutdown()
        tls.stop()
        guarded.stop()


def _cases(s: WrongSetups) -> dict[str, tuple[Endpoint, str, str]]:
    """name -> (endpoint, reason, a word of the fix)."""
    return {
        "tls without its CA": (Endpoint(s.tls), ConnectionProblem.TLS, "--tls-ca"),
        "refused": (Endpoint(s.refused), ConnectionProblem.REFUSED, "check the address"),
        "wrong token": (Endpoint(s.token, token="wrong"), ConnectionProblem.TOKEN, "token file"),
        "no token": (Endpoint(s.token), ConnectionProblem.TOKEN, "token file"),
        "unresolved": (Endpoint(s.unresolved), ConnectionProblem.UNRESOLVED, "check the address"),
        "http/1": (Endpoint(s.http), ConnectionProblem.PROTOCOL, "check the port"),
        "ca given to a plain service": (
            Endpoint(s.token, token=TOKEN, tls_ca=s.ca),
            ConnectionProblem.TLS,
            "drop --tls-ca",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["tls without its CA", "refused", "wrong token", "no token", "unresolved", "http/1",
     "ca given to a plain service"],
)  # fmt: skip
def test_the_client_library_fails_fast_and_names_the_reason(setups: WrongSetups, case: str) -> None:
    endpoint, reason, fix = _cases(setups)[case]
    client = ClusteringClient(endpoint)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceUnavailableError) as caught:
            client.wait_ready()
    finally:
        client.close()
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT_S, f"{case}: {elapsed:.1f}s"
    assert isinstance(caught.value, ConnectionProblem)
    assert caught.value.reason == reason, str(caught.value)
    assert fix in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_inference_info_fails_fast_on_a_wrong_port_and_honours_its_timeout(
    setups: WrongSetups,
) -> None:
    # The example: InferenceClient(...).info() against a port nothing listens on.
    client = InferenceClient(Endpoint(setups.refused))
    started = time.monotonic()
    with pytest.raises(ConnectionProblem) as caught:
        client.info()
    assert time.monotonic() - started < LIMIT_S
    assert caught.value.reason == ConnectionProblem.REFUSED
    client.close()
    # A service that answers, but never says SERVING for this service: the timeout is the
    # caller's (here the TLS port reached with its CA, asked for a service it does not run).
    client = InferenceClient(Endpoint(setups.tls, tls_ca=setups.ca), timeout=2)
    started = time.monotonic()
    with pytest.raises(ConnectionProblem) as caught:
        client.info()
    assert time.monotonic() - started < 5
    # (the balancer's health check never finds the service there: no call is sent at all)
    assert caught.value.reason in (ConnectionProblem.WRONG_SERVICE, ConnectionProblem.NOT_SERVING)
    client.close()


def test_a_token_file_in_the_endpoint_is_sent(setups: WrongSetups) -> None:
    token_file = setups.folder / "token"
    client = ClusteringClient(Endpoint(setups.token, token_file=token_file))
    try:
        client.wait_ready()
        assert client.open_store(str(setups.folder / "faces.db")).schema_version > 0
    finally:
        client.close()


@pytest.mark.parametrize(
    ("case", "cause", "fix"),
    [
        ("tls", "speaks TLS", "--tls-ca"),
        ("refused", "connection refused", "check the address"),
        ("token", "refused the bearer token", "--token-file"),
        ("unresolved", "does not resolve", "check the address"),
        ("http", "HTTP/1 server", "check the port"),
    ],
)
def test_the_command_fails_fast_with_the_cause_and_the_fix(
    setups: WrongSetups, tmp_path: Path, case: str, cause: str, fix: str
) -> None:
    address = getattr(setups, case)
    token_file = tmp_path / "wrong-token"
    token_file.write_text("wrong\n")
    started = time.monotonic()
    result = run_facesets(
        "store", "check", str(tmp_path / "faces.db"), "--clustering", address,
        "--token-file", str(token_file), timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < LIMIT_S, f"{case}: {elapsed:.1f}s\n{result.stderr}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert cause in errors[0] and fix in errors[0], result.stderr
    assert address in errors[0]


def test_doctor_names_tls_as_the_cause(setups: WrongSetups) -> None:
    started = time.monotonic()
    done = run_facesets("doctor", "--inference", setups.tls, timeout=120)
    assert time.monotonic() - started < 30  # its local checks included
    line = next(line for line in done.stdout.splitlines() if f"inference at {setups.tls}" in line)
    assert line.startswith("ERROR") and "speaks TLS" in line and "--tls-ca" in line, line
