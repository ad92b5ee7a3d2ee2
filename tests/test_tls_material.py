"""`facesets serve` with TLS material that does not load (a text file, a missing file, a key
that is not the certificate's) says so, naming the files, instead of blaming the port."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import free_port

from services import run_facesets


def _serve(cert: Path, key: Path):
    return run_facesets(
        "serve", "clustering", "--listen", f"127.0.0.1:{free_port()}",
        "--tls-cert", str(cert), "--tls-key", str(key), timeout=60,
    )  # fmt: skip


def _refused(result, *named: Path) -> str:
    assert result.returncode != 0
    err = result.stderr
    assert "another process" not in err and "Traceback" not in err, err
    assert "TLS certificate" in err and "--tls-key" in err, err
    for path in named:
        assert str(path) in err, err
    return err


def test_a_text_file_or_a_missing_file_as_tls_material_is_named(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a certificate\n")
    _refused(_serve(notes, notes), notes)
    missing = tmp_path / "server.key"
    assert "No such file" in _refused(_serve(notes, missing), notes, missing)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_a_key_that_is_not_the_certificates_is_named(tmp_path: Path) -> None:
    from test_tls import make_ca

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, cert = make_ca(tmp_path / "a", "one")
    other_key, _ = make_ca(tmp_path / "b", "two")
    _refused(_serve(cert, other_key), cert, other_key)
