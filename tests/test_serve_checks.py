"""`facesets serve` checks its listen address, token and TLS files before it loads a model."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import free_port

from services import run_facesets


def test_an_exposed_address_without_token_is_refused_before_any_model_is_read(
    tmp_path: Path,
) -> None:
    # No pack under this model root: had the service read a model, it would fail on that instead.
    empty_root = tmp_path / "no-models"
    empty_root.mkdir()
    started = time.monotonic()
    result = run_facesets(
        "serve", "inference", "--listen", f"0.0.0.0:{free_port()}",
        "--model-root", str(empty_root), "--allow-cpu-fallback",
        timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0" in result.stderr, result.stderr
    assert "--token-file" in result.stderr
    assert "model" not in result.stderr.lower().replace("--model", ""), result.stderr
    assert elapsed < 10, elapsed


def test_tls_files_that_do_not_match_are_refused_before_any_model_is_read(
    tmp_path: Path,
) -> None:
    from test_tls import make_ca

    _, cert = make_ca(tmp_path, "one")
    other_key, _ = make_ca(tmp_path, "two")
    empty_root = tmp_path / "no-models"
    empty_root.mkdir()
    result = run_facesets(
        "serve", "inference", "--listen", f"0.0.0.0:{free_port()}",
        "--tls-cert", str(cert), "--tls-key", str(other_key),
        "--model-root", str(empty_root), "--allow-cpu-fallback",
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "the key is not the certificate's" in result.stderr, result.stderr
    missing = run_facesets(
        "serve", "clustering", "--listen", f"0.0.0.0:{free_port()}",
        "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(other_key),
        timeout=60,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "No such file or directory" in missing.stderr and "nope.pem" in missing.stderr
