"""ClipScore on a real inference service with a tiny random open_clip model (real forward
passes through the ONNX towers), checked against open_clip's own computation."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from conftest import free_port
from PIL import Image

from facesets.common.settings import InferenceSettings
from facesets.contract import layout
from facesets.inference import clip
from facesets.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from services import ServiceProcess

pytest.importorskip("open_clip", reason="ClipScore needs the clip extra (make install has it)")
from clip_fixtures import TinyClip, make_tiny_clip  # noqa: E402

PROMPTS = ["a face wearing a medical mask", "a face wearing sunglasses", "a clear face"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


def _photos(lfw_dir) -> list[Image.Image]:
    paths = sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[:3]
    images = [Image.open(p).convert("RGB") for p in paths]
    images.append(images[0].crop((60, 40, 190, 230)).resize((97, 141)))  # not square
    return images


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_clip_score_matches_open_clip_through_the_service(tiny, lfw_dir, model_root, tmp_path):
    service = ServiceProcess(
        "inference",
        free_port(),
        tmp_path / "inference.log",
        "--model-root",
        str(model_root),
        "--model-pack",
        "facepack-mini",
        "--providers",
        "cpu",
        *tiny.service_flags(),
    ).start()
    try:
        images = _photos(lfw_dir)
        path_image = tmp_path / "on-disk.png"
        path_image.write_bytes(_png(images[1]))
        requests = [
            inference_pb2.ClipScoreRequest(
                image=common_pb2.ImageRequest(id=f"img{i}", data=_png(image)),
                prompts=PROMPTS if i == 0 else [],
            )
            for i, image in enumerate(images)
        ]
        requests.append(
            inference_pb2.ClipScoreRequest(
                image=common_pb2.ImageRequest(id="by-path", path=str(path_image))
            )
        )
        requests.append(
            inference_pb2.ClipScoreRequest(
                image=common_pb2.ImageRequest(id="broken", data=b"not an image")
            )
        )
        with grpc.insecure_channel(service.address) as channel:
            stub = inference_pb2_grpc.InferenceStub(channel)
            info_before = stub.GetInfo(inference_pb2.GetInfoRequest())
            results = list(stub.ClipScore(iter(requests), timeout=120))
            info = stub.GetInfo(inference_pb2.GetInfoRequest())
        by_id = {r.id: r for r in results}
        assert set(by_id) == {"img0", "img1", "img2", "img3", "by-path", "broken"}
        assert by_id["broken"].error.reason == common_pb2.ERROR_REASON_NOT_AN_IMAGE
        assert not by_id["broken"].scores
        got = np.array([list(by_id[f"img{i}"].scores) for i in range(len(images))])
        assert got.shape == (len(images), len(PROMPTS))
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
        expected = tiny.probabilities(images, PROMPTS)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        # the scores are not uniform: the comparison would catch a wrong model or scale
        assert np.ptp(expected, axis=1).max() > 0.05
        np.testing.assert_allclose(list(by_id["by-path"].scores), got[1], atol=1e-6)
        assert not info_before.clip_loaded
        assert info.clip_loaded and info.clip_model == "facesets-tiny-clip"
        assert info.clip_pretrained == str(tiny.checkpoint)
        assert info.clip_providers == ["CPUExecutionProvider"]
        # the towers were exported once, beside the weights
        exported = list((tiny.cache / clip.ONNX_SUBDIR).glob("*/image.onnx"))
        assert len(exported) == 1
    finally:
        service.stop()


def test_clip_score_without_prompts_is_invalid(tiny, model_root, tmp_path):
    config = InferenceSettings(
        model_root=model_root,
        model_pack="facepack-mini",
        providers=("cpu",),
        clip_model="facesets-tiny-clip",
        clip_pretrained=str(tiny.checkpoint),
        clip_cache=tiny.cache,
    )
    from facesets.common.server import ServeOptions, start_server
    from facesets.inference import servicer as inference

    running = start_server(
        ServeOptions(listen="127.0.0.1:0"),
        inference.register(inference.build(config)),
        [inference.SERVICE_NAME],
    )
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = inference_pb2_grpc.InferenceStub(channel)
            request = inference_pb2.ClipScoreRequest(
                image=common_pb2.ImageRequest(id="a", data=b"x")
            )
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.ClipScore(iter([request]), timeout=30))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        running.stop(0)


def test_missing_weights_say_what_to_fetch_and_where(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # read at import time: the running process is told too, so nothing waits on the network
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "clip-cache"
    scorer = clip.ClipScorer(
        clip.ClipSpec("ViT-L-14", "dfn2b_s39b", cache), ["CPUExecutionProvider"]
    )
    with pytest.raises(clip.ClipUnavailable) as caught:
        scorer.load()
    message = str(caught.value)
    assert "ViT-L-14 / dfn2b_s39b" in message
    assert "apple/DFN2B-CLIP-ViT-L-14-39B" in message
    assert str(cache) in message
    assert "create_model_and_transforms" in message
    assert scorer.unavailable == message
    assert not (cache / clip.ONNX_SUBDIR).exists() or not any(
        (cache / clip.ONNX_SUBDIR).rglob("meta.json")
    )


def test_clip_sessions_take_the_directml_settings_of_the_face_models(tiny):
    dml = ["DmlExecutionProvider", "CPUExecutionProvider"]
    scorer = clip.ClipScorer(
        clip.ClipSpec("facesets-tiny-clip", str(tiny.checkpoint), tiny.cache), dml
    )
    assert scorer.options.enable_mem_pattern is False
    assert scorer.options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert scorer.options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    cpu = clip.ClipScorer(
        clip.ClipSpec("facesets-tiny-clip", str(tiny.checkpoint), tiny.cache),
        ["CPUExecutionProvider"],
    )
    assert cpu.options.enable_mem_pattern is True
    # on this machine's onnxruntime the DirectML request falls back to the CPU and still scores
    pixels = np.stack([scorer.pixels(Image.new("RGB", (40, 50), (200, 10, 10)))])
    probabilities = scorer.score(pixels, PROMPTS)
    assert scorer.loaded_providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_occlusion_command_end_to_end_with_the_tiny_model(tiny, model_root, tmp_path):
    """`facesets occlusion` through local export and inference services: the PNGs it moves are
    those open_clip's own scores put over the threshold; --undo puts every byte back."""
    import json
    import os

    from maintenance_export import assert_fsz_match_folders, build_export, pngs, snapshot

    from services import run_facesets

    export = build_export(tmp_path / "export", {0: pngs(6, 7, "a"), 1: pngs(4, 8, "b")})
    before = snapshot(export)
    prompts = ["a face wearing a medical mask", "a face wearing sunglasses"]
    clear = "a clear unobstructed face"
    files = sorted(export.glob(f"faceset_00*/{layout.CROPS_DIR}/*.png"))
    expected = tiny.probabilities([Image.open(p) for p in files], [*prompts, clear])
    occlusion = expected[:, :2].sum(axis=1)
    ordered = np.sort(occlusion)
    threshold = float((ordered[-3] + ordered[-4]) / 2)  # the three most occluded PNGs
    assert ordered[-3] - ordered[-4] > 2e-4
    wanted = {files[i].name for i in np.flatnonzero(occlusion >= threshold)}
    env = {
        **os.environ,
        "FACESETS_CLIP_MODEL": "facesets-tiny-clip",
        "FACESETS_CLIP_PRETRAINED": str(tiny.checkpoint),
        "FACESETS_CLIP_CACHE": str(tiny.cache),
    }
    common = ["--model-root", str(model_root), "--model-pack", "facepack-mini", "--json"]
    flags = ["--threshold", f"{threshold:.6f}", "--faceset-fraction", "1.0"]
    flags += [arg for prompt in prompts for arg in ("--prompt", prompt)]
    done = run_facesets("occlusion", str(export), *flags, *common, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["counts"]["dropped"] == 3
    moved = {Path(m["src"]).name for m in summary["moves"]}
    assert moved == wanted
    assert {
        p.name for p in export.glob(f"faceset_00*/{layout.CROPS_DIR}/{layout.DROPPED_DIR}/*.png")
    } == wanted
    assert assert_fsz_match_folders(export) == 4
    undone = run_facesets("occlusion", str(export), "--undo", "--json", env=env)
    assert undone.returncode == 0, undone.stderr[-3000:]
    assert len(json.loads(undone.stdout)["restored"]) == 3
    assert snapshot(export) == before


def test_without_open_clip_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` fails
    scorer = clip.ClipScorer(
        clip.ClipSpec("ViT-L-14", "dfn2b_s39b", tmp_path), ["CPUExecutionProvider"]
    )
    with pytest.raises(clip.ClipUnavailable, match=r"pip install 'facesets\[clip\]' torch=="):
        scorer.load()
    assert "open_clip and torch" in scorer.unavailable
