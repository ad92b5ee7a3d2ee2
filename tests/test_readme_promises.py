"""What the README promises, each through the command or the service a user would run:
`make demo` and its message without sample data, `make test` without sample data, --help,
health and reflection on every service, --max-image-pixels, the re-decode of small faces, and
the Immich circuit breaker's ping probe."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import REPO, free_port, lfw_people
from fake_immich import FakeImmich, lfw_library
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from images import png_claiming
from PIL import Image

from facesets.client import Endpoint, ImageInput, InferenceClient
from facesets.common import settings
from facesets.orchestrator import cli
from facesets.orchestrator.settings import SETTINGS
from facesets.v1 import common_pb2
from services import ServiceProcess, run_facesets

# --- make demo, make test -------------------------------------------------------------------


def test_make_demo_without_sample_data_says_what_it_needs() -> None:
    # -o install: the venv is there already; only the demo target's own check runs.
    done = subprocess.run(
        ["make", "-o", "install", "demo", "SHARED=/nonexistent/shared"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sample data in /nonexistent/shared, which is not here" in done.stdout
    assert "facesets run SRC OUT" in done.stdout
    assert "~/.insightface/models/buffalo_l" in done.stdout and "buffalo_l" in done.stdout


@pytest.mark.slow
def test_demo_runs_the_pipeline_on_a_small_slice(shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facesets.orchestrator.demo",
            "--shared",
            str(shared_dir),
            "--out",
            str(out),
            "--people",
            "3",
            "--per-person",
            "6",
            "--others",
            "3",
            "--min-faces",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    copied = len(list((out / "photos").rglob("*.jpg")))
    assert 3 * 6 + 3 <= copied <= 3 * 6 + 3 * 2  # 3 people x 6, 3 others with one or two
    assert f"demo: {copied} LFW photos" in done.stdout
    report = out / "result" / "export" / "report" / "index.html"
    assert f"Open the review report: file://{report.resolve()}" in done.stdout
    assert report.is_file() and "faceset_001" in report.read_text()
    assert len(list((out / "result" / "export").rglob("*.fsz"))) >= 2 * 3


def test_make_test_without_sample_data_fails_and_says_where_it_goes(tmp_path: Path) -> None:
    env = {**os.environ, "FACESETS_SHARED": str(tmp_path / "no-shared")}
    env.pop("FACESETS_NO_SAMPLE_DATA", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += [str(REPO / "tests" / "test_protos.py")]
    failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    assert failed.returncode != 0
    said = failed.stdout + failed.stderr
    assert "sample data the tests run on is missing" in said
    assert str(tmp_path / "no-shared" / "models" / "facepack-mini") in said
    assert "FACESETS_NO_SAMPLE_DATA=1" in said
    opted_out = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**env, "FACESETS_NO_SAMPLE_DATA": "1"},
    )
    assert opted_out.returncode == 0, opted_out.stdout


# --- --help ---------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every command and sub-command path with its parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


def test_facesets_help_lists_every_command() -> None:
    done = run_facesets("--help", timeout=60)
    assert done.returncode == 0
    names = [path[0] for path, _ in _commands(cli.build_parser())]
    assert len(names) >= 10
    for name in names:
        assert name in done.stdout


def test_every_command_help_exits_0_and_explains_its_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    commands = list(_commands(cli.build_parser()))
    for path, parser in commands:
        with pytest.raises(SystemExit) as exited:
            cli.main([*path, "--help"])
        assert exited.value.code == 0, path
        text = capsys.readouterr().out
        assert text.startswith(f"usage: facesets {' '.join(path)}"), path
        assert parser.description, f"facesets {' '.join(path)} --help: no description"
        assert parser.description.split()[0] in text, path
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            flag = max(action.option_strings, key=len)
            assert flag in text, (path, flag)
            if flag != "--help":
                assert action.help and len(action.help) > 8, f"{' '.join(path)} {flag}: no help"
    assert {("serve",), ("export-swap",), ("immich", "stage")} <= {p for p, _ in commands}


# --- health and reflection on every service -------------------------------------------------


@pytest.mark.parametrize(
    ("service", "name"),
    [("clustering", "facesets.v1.Clustering"), ("export", "facesets.v1.Export")],
)
def test_health_and_reflection(service: str, name: str, tmp_path: Path) -> None:
    process = ServiceProcess(service, free_port(), tmp_path / "service.log").start()
    try:
        with grpc.insecure_channel(process.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for asked in ("", name):
                status = health.Check(health_pb2.HealthCheckRequest(service=asked), timeout=10)
                assert status.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as unknown:
                health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
            database = ProtoReflectionDescriptorDatabase(channel)
            services = database.get_services()
            assert name in services and "grpc.health.v1.Health" in services
            # Reflection serves the contract itself: its methods, as grpcurl would list them.
            descriptor = database.FindFileContainingSymbol(name)
            assert any(s.name == name.rsplit(".", 1)[1] for s in descriptor.service)
    finally:
        process.stop()


# --- the inference service: --max-image-pixels, small faces re-decoded ---------------------

PIXEL_LIMIT = 12_500_000  # a 4000 x 3000 photo passes; the default limit is far higher


@pytest.fixture(scope="module")
def limited_inference(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path):
    log = tmp_path_factory.mktemp("inference") / "inference.log"
    process = ServiceProcess(
        "inference", free_port(), log, "--max-image-pixels", str(PIXEL_LIMIT)
    ).start()
    client = InferenceClient(Endpoint(process.address))
    yield client
    client.close()
    process.stop()


def test_max_image_pixels_refuses_larger_images_only(limited_inference, lfw_dir: Path) -> None:
    assert settings.shared().decode.max_image_pixels > PIXEL_LIMIT
    photo = lfw_dir / "Colin_Powell" / "Colin_Powell_0001.jpg"
    over, under, face = limited_inference.detect(
        [
            ImageInput(id="over", data=png_claiming(4000, 3200)),  # 12.8 M pixels
            ImageInput(id="under", data=png_claiming(4000, 3000)),  # 12 M pixels
            ImageInput(id="face", path=str(photo)),
        ]
    )
    assert over.error.reason == common_pb2.ERROR_REASON_TOO_MANY_PIXELS
    assert str(PIXEL_LIMIT) in over.error.message.replace(",", "").replace("_", "")
    assert under.error.reason != common_pb2.ERROR_REASON_TOO_MANY_PIXELS  # refused for other cause
    assert not face.HasField("error") and len(face.faces) == 1


def _on_canvas(photo: Path, size: tuple[int, int], halved: bool = False) -> bytes:
    """The photo pasted at its own size (1:1) onto a large grey canvas; `halved`: that canvas
    brought to half size, the pixels a 1/2 decode gives."""
    canvas = Image.new("RGB", size, (118, 118, 118))
    canvas.paste(Image.open(photo).convert("RGB"), (size[0] // 2, size[1] // 2))
    buffer = io.BytesIO()
    if halved:
        canvas = canvas.resize((size[0] // 2, size[1] // 2), Image.Resampling.BOX)
        canvas.save(buffer, "PNG")
    else:
        canvas.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _best(result) -> np.ndarray:
    face = max(result.faces, key=lambda f: f.det_score)
    return np.frombuffer(face.embedding, "<f4")


def test_a_small_face_in_a_large_photo_is_aligned_from_full_resolution_pixels(
    limited_inference, lfw_dir: Path
) -> None:
    """A 4000 x 3000 photo is decoded reduced for the detector; a 250 px LFW photo pasted into
    it at 1:1 holds a face too small to align from the reduced pixels, so the service decodes
    it again larger. The embedding of the placed face is then closer to the original photo's
    than the embedding of the same canvas at half size (the pixels a 1/2 decode gives, from
    which the face would be upsampled), for every person."""
    margins = []
    for person in ("Colin_Powell", "Tony_Blair", "Serena_Williams"):
        photo = sorted((lfw_dir / person).glob("*.jpg"))[0]
        [small] = limited_inference.embed([ImageInput(id="small", path=str(photo))])
        large, halved = limited_inference.embed(
            [
                ImageInput(id="large", data=_on_canvas(photo, (4000, 3000))),
                ImageInput(id="halved", data=_on_canvas(photo, (4000, 3000), halved=True)),
            ]
        )
        assert (large.width, large.height) == (4000, 3000)
        placed = max(large.faces, key=lambda f: f.det_score)
        assert placed.face_short < 2 * 112  # from the 1/2 decode it would be upsampled
        original = _best(small)
        full, half = float(original @ _best(large)), float(original @ _best(halved))
        assert full > 0.93, person
        assert full > half, (person, full, half)
        margins.append(full - half)
    assert float(np.mean(margins)) > 0.005, margins


# --- the Immich circuit breaker -------------------------------------------------------------


def test_immich_breaker_pings_after_12_consecutive_errors_then_stops(
    lfw_dir: Path, tmp_path: Path
) -> None:
    key = "breaker-test-key-0042"
    photos = [p for group in lfw_people(lfw_dir, 10, 2).values() for p in group]
    env = {**os.environ, "IMMICH_URL": "", "IMMICH_API_KEY": key}
    with FakeImmich(lfw_library(photos), key) as fake:
        fake.start_outage(after=6, mode="503")  # a proxy answering for a dead Immich
        env["IMMICH_URL"] = fake.url
        done = run_facesets(
            "immich",
            "stage",
            "--user",
            "alice",
            "--staging-root",
            str(tmp_path / "staging"),
            "--no-progress",
            env=env,
            timeout=300,
        )
        log = list(fake.log)
    assert done.returncode == 2, done.stderr
    log.sort(key=lambda r: r.ordinal)
    pings = [i for i, r in enumerate(log) if r.endpoint == "ping"]
    assert pings, "the breaker never probed /api/server/ping"
    before = Counter(r.status for r in log[: pings[0]] if r.endpoint != "ping")
    threshold = SETTINGS.immich.breaker_errors
    assert threshold == 12  # the README's figure
    # The probe comes once `threshold` requests in a row have failed, not before ...
    assert before[503] >= threshold, before
    # ... and the failed probe stops the run: no fourfold hard limit was needed.
    failed = sum(1 for r in log if r.status == 503 and r.endpoint != "ping")
    assert failed < 4 * threshold, failed
    assert "ping failed" in done.stderr
    assert key not in done.stderr + done.stdout
