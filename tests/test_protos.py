"""The committed stubs are exactly what grpcio-tools generates from protos/ (never hand-edited)."""

from __future__ import annotations

import filecmp
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[1]


def test_generated_stubs_are_current(tmp_path):
    protos = sorted(str(p.relative_to(REPO / "protos")) for p in (REPO / "protos").rglob("*.proto"))
    assert protos, "no contracts found"
    args = [
        "protoc",
        f"-I{REPO / 'protos'}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        *protos,
    ]
    import os

    cwd = os.getcwd()
    os.chdir(REPO / "protos")
    try:
        assert protoc.main(args) == 0
    finally:
        os.chdir(cwd)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed_dir = REPO / "clients"
    stale = [
        str(p)
        for p in generated
        if not (committed_dir / p).exists()
        or not filecmp.cmp(tmp_path / p, committed_dir / p, shallow=False)
    ]
    assert not stale, f"stubs out of date, run `make protos`: {stale}"
    extra = {
        p.relative_to(committed_dir) for p in (committed_dir / "facesets" / "v1").glob("*_pb2*")
    }
    assert extra == set(generated), "stubs without a contract in protos/"
