"""The three services as separate processes beyond loopback with a bearer token, driven step by
step by the `facesets` command: embed, cluster, refine, then the standalone `export-swap`,
whose one-face check of every crop is the inference service's CountFaces. The token is in no
output of the command (at debug level) and in no file it writes."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import free_port, reference_session_options
from insightface.model_zoo import model_zoo

from facesets.v1 import export_pb2
from services import ServiceProcess, run_facesets

TOKEN = "separate-services-token-73f1c9"
PEOPLE = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")


@pytest.mark.slow
def test_step_by_step_through_separate_services_with_a_token(
    lfw_dir: Path, model_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "photos"
    for person in PEOPLE:
        (src / person).mkdir(parents=True)
        for photo in sorted((lfw_dir / person).glob("*.jpg"))[:6]:
            shutil.copy(photo, src / person / photo.name)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    started: dict[str, ServiceProcess] = {}
    for name in ("inference", "clustering", "export"):
        port = free_port()
        # The export service calls the other two at the addresses it starts with, with the token.
        peers = [
            x
            for peer in ("inference", "clustering")
            if peer in started
            for x in (f"--{peer}", started[peer].address, f"--{peer}-token-file", str(token_file))
        ]
        service = ServiceProcess(
            name, port, tmp_path / f"{name}.log", "--token-file", str(token_file),
            *(peers if name == "export" else []),
        )  # fmt: skip
        started[name] = service.start(listen=f"0.0.0.0:{port}")
    at = {f"--{name}": service.address for name, service in started.items()}
    auth = ["--token-file", str(token_file)]
    store, raw, refined, export = (tmp_path / n for n in ("faces.db", "raw", "refined", "export"))
    said: list[str] = []

    def facesets(*args: str, **addresses: str) -> dict:
        flags = [x for flag in addresses.values() for x in (flag, at[flag])]
        done = run_facesets("--log-level", "debug", *args, "--json", *flags, *auth)
        said.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    try:
        facesets("embed", str(src), str(store), c="--clustering", i="--inference")
        facesets("cluster", str(store), str(raw), c="--clustering")
        assert facesets("refine", str(store), str(refined), "--min-faces", "4", c="--clustering")[
            "facesets"
        ] == len(PEOPLE)
        summary = facesets(
            "export-swap",
            str(store),
            str(refined / "refine_manifest.json"),
            str(export),
            "--raw-manifest",
            str(raw / "manifest.json"),
            "--candidates",
            e="--export",
            c="--clustering",
            i="--inference",
        )
        # A command cannot send the export service elsewhere: it calls the inference service it
        # was started with, whatever address the command was given (here the clustering
        # service's, which answers no Inference calls).
        elsewhere = run_facesets(
            "export-swap",
            str(store),
            str(refined / "refine_manifest.json"),
            str(tmp_path / "export-elsewhere"),
            "--export",
            at["--export"],
            "--clustering",
            at["--clustering"],
            "--inference",
            at["--clustering"],
            *auth,
            timeout=300,
        )
        said.append(elsewhere.stdout + elsewhere.stderr)
    finally:
        for service in started.values():
            service.stop()
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert summary and len(list((tmp_path / "export-elsewhere").rglob("*.fsz"))) == 2 * len(PEOPLE)
    assert "clustering_address" not in export_pb2.ExportSwapRequest.DESCRIPTOR.fields_by_name

    bundles = sorted(export.rglob("*.fsz"))
    assert len(bundles) == 2 * len(PEOPLE)
    detector = model_zoo.get_model(
        str(model_root / "models" / "facepack-mini" / "det_scrfd_2.5g_bnkps.onnx"),
        providers=["CPUExecutionProvider"],
        sess_options=reference_session_options(),
    )
    detector.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    for bundle in bundles:
        with zipfile.ZipFile(bundle) as archive:
            for name in archive.namelist():
                image = cv2.imdecode(np.frombuffer(archive.read(name), np.uint8), cv2.IMREAD_COLOR)
                boxes, _ = detector.detect(image, input_size=(640, 640))
                assert len(boxes) == 1, f"{bundle.name}/{name}"

    # The token: in no output of the client, in no file written, in no service log.
    assert all(TOKEN not in text for text in said)
    written = [p for d in (raw, refined, export) for p in d.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in written)
    for path in [*written, *tmp_path.glob("*.log")]:
        if path.suffix in (".json", ".html", ".log", ".txt", ".fsz"):
            assert TOKEN.encode() not in path.read_bytes(), path
