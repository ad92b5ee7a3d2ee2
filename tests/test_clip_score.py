"""ClipScore on a real inference service with exported CLIP folders (real forward passes through
the ONNX towers), checked against open_clip's own computation.

Without torch: the folder committed under tests/data (scripts/make_tiny_clip.py) and open_clip's
answers saved beside it, with torch, open_clip and ftfy made unimportable in the service. With
torch: a tiny random open_clip model exported by `facesets clip export` and compared live."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from clip_fixtures import (
    TINY_CHECK,
    TINY_FOLDER,
    TINY_IMAGES,
    TinyClip,
    blocked_attempts,
    make_tiny_clip,
    torch_free_pythonpath,
)
from conftest import free_port
from PIL import Image

from facesets.common.settings import ClipSettings, InferenceSettings, RuntimeSettings
from facesets.contract import layout
from facesets.inference import clip
from facesets.inference.clip_prep import BpeTokenizer, Preprocess
from facesets.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from services import FACESETS, ServiceProcess, run_facesets

PROMPTS = ["a face wearing a medical mask", "a face wearing sunglasses", "a clear face"]
CHECK: dict[str, Any] = json.loads(TINY_CHECK.read_text())


def _has_torch() -> bool:
    try:
        import open_clip  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


needs_torch = pytest.mark.skipif(
    not _has_torch(), reason="comparing with open_clip live needs torch (the clip-export extra)"
)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _score(service: ServiceProcess, requests: list[inference_pb2.ClipScoreRequest]) -> Any:
    with grpc.insecure_channel(service.address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        info_before = stub.GetInfo(inference_pb2.GetInfoRequest())
        results = list(stub.ClipScore(iter(requests), timeout=120))
        info = stub.GetInfo(inference_pb2.GetInfoRequest())
    return info_before, {r.id: r for r in results}, info


def _inference(model_root: Path, log: Path, *flags: str) -> ServiceProcess:
    return ServiceProcess(
        "inference",
        free_port(),
        log,
        "--model-root",
        str(model_root),
        "--model-pack",
        "facepack-mini",
        "--providers",
        "cpu",
        *flags,
    )


def test_clip_score_without_torch_equals_open_clip_through_the_service(
    model_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service where torch, open_clip and ftfy do not import scores the committed folder as
    open_clip does: the probabilities open_clip computed for these images, to 1e-4."""
    blocker = torch_free_pythonpath(tmp_path / "lean")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])
    )
    tried = subprocess.run(
        [sys.executable, "-c", "import torch"], capture_output=True, text=True, timeout=60
    )
    assert tried.returncode != 0 and "No module named 'torch'" in tried.stderr
    blocker_attempts_before = blocked_attempts(blocker)
    service = _inference(model_root, tmp_path / "inference.log", "--clip-dir", str(TINY_FOLDER))
    service.start()
    try:
        images = [Image.open(TINY_IMAGES / name) for name in CHECK["images"]]
        on_disk = tmp_path / "on-disk.png"
        on_disk.write_bytes(_png(images[1]))
        requests = [
            inference_pb2.ClipScoreRequest(
                image=common_pb2.ImageRequest(id=f"img{i}", data=_png(image)),
                prompts=CHECK["prompts"] if i == 0 else [],
            )
            for i, image in enumerate(images)
        ]
        requests.append(
            inference_pb2.ClipScoreRequest(
                image=common_pb2.ImageRequest(id="by-path", path=str(on_disk))
            )
        )
        requests.append(
            inference_pb2.ClipScoreRequest(
                image=common_pb2.ImageRequest(id="broken", data=b"not an image")
            )
        )
        info_before, by_id, info = _score(service, requests)
    finally:
        service.stop()
    assert set(by_id) == {*(f"img{i}" for i in range(len(images))), "by-path", "broken"}
    assert by_id["broken"].error.reason == common_pb2.ERROR_REASON_NOT_AN_IMAGE
    assert not by_id["broken"].scores
    got = np.array([list(by_id[f"img{i}"].scores) for i in range(len(images))])
    expected = np.array(CHECK["probabilities"])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.ptp(expected, axis=0).max() > 0.3  # the images score differently: a real check
    np.testing.assert_allclose(list(by_id["by-path"].scores), got[1], atol=1e-6)
    assert not info_before.clip_loaded
    assert info.clip_loaded and info.clip_model == "facesets-small-vocab-clip"
    assert info.clip_pretrained == "tiny-clip.pt"
    assert info.clip_providers == ["CPUExecutionProvider"]
    assert info.versions["facesets"]
    # the service did not even try torch or open_clip (the `import torch` above did)
    tried_in_service = blocked_attempts(blocker)[len(blocker_attempts_before) :]
    assert not {"torch", "open_clip"} & set(tried_in_service), tried_in_service


@pytest.mark.parametrize("ftfy", [True, False], ids=["ftfy-if-installed", "without-ftfy"])
def test_tokenizer_gives_open_clips_token_ids(ftfy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not ftfy:
        monkeypatch.setitem(sys.modules, "ftfy", None)  # `import ftfy` fails
    tokenizer = BpeTokenizer.from_meta(TINY_FOLDER, clip.read_meta(TINY_FOLDER).tokenizer)
    got = tokenizer(CHECK["token_prompts"])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.array(CHECK["tokens"]))


def test_clip_score_without_prompts_is_invalid(model_root: Path) -> None:
    config = InferenceSettings(
        model_root=model_root,
        model_pack="facepack-mini",
        runtime=RuntimeSettings(providers=("cpu",)),
        clip=ClipSettings(dir=TINY_FOLDER),
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


def test_clip_sessions_take_the_directml_settings_of_the_face_models() -> None:
    dml = ["DmlExecutionProvider", "CPUExecutionProvider"]
    spec = clip.ClipSpec("facesets-small-vocab-clip", "tiny-clip.pt", TINY_FOLDER, TINY_FOLDER)
    scorer = clip.ClipScorer(spec, dml)
    assert scorer.options.enable_mem_pattern is False
    assert scorer.options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert scorer.options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    cpu = clip.ClipScorer(spec, ["CPUExecutionProvider"])
    assert cpu.options.enable_mem_pattern is True
    # on this machine's onnxruntime the DirectML request falls back to the CPU and still scores
    pixels = np.stack([scorer.pixels(Image.new("RGB", (40, 50), (200, 10, 10)))])
    probabilities = scorer.score(pixels, PROMPTS)
    assert scorer.loaded_providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")  # --flag, not the -- inside MODEL--TAG


def _flags_of(*command: str) -> set[str]:
    shown = run_facesets(*command, "--help")
    assert shown.returncode == 0, shown.stderr
    return set(FLAG.findall(shown.stdout))


def test_occlusion_without_an_exported_model_names_the_export_command(
    model_root: Path, tmp_path: Path
) -> None:
    """The error names `facesets clip export` with the folder it must write, and only flags
    that exist (it used to name --clip-pretrained, which `occlusion` does not have)."""
    from maintenance_export import build_export, pngs

    export = build_export(tmp_path / "export", {0: pngs(2, 7, "a")})
    empty_cache = tmp_path / "clip-cache"
    env = {**os.environ, "FACESETS_CLIP_CACHE": str(empty_cache)}
    env.pop("FACESETS_CLIP_DIR", None)
    done = run_facesets(
        "occlusion", str(export), "--model-root", str(model_root), "--model-pack",
        "facepack-mini", env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    folder = empty_cache / clip.ONNX_SUBDIR / "ViT-L-14--dfn2b_s39b"
    assert f"facesets clip export ViT-L-14 dfn2b_s39b --out {folder}" in done.stderr
    assert "FAILED_PRECONDITION" in done.stderr
    named = set(FLAG.findall(done.stderr))
    assert "--clip-pretrained" not in named
    assert named - {"--out", "--index-url"} <= _flags_of("occlusion")
    assert "--out" in _flags_of("clip", "export")


def test_an_older_export_asks_to_be_exported_again(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((TINY_FOLDER / clip.META_FILE).read_text())
    (old / clip.META_FILE).write_text(json.dumps({**meta, "version": 1}))
    scorer = clip.ClipScorer(clip.ClipSpec("m", "t", tmp_path, old), ["CPUExecutionProvider"])
    with pytest.raises(clip.ClipUnavailable, match="export it again with") as caught:
        scorer.load()
    assert f"facesets clip export facesets-small-vocab-clip tiny-clip.pt --out {old}" in str(
        caught.value
    )
    assert scorer.unavailable == str(caught.value)


def test_occlusion_command_end_to_end_without_torch(model_root: Path, tmp_path: Path) -> None:
    """`facesets occlusion --clip-dir` through local export and inference services that cannot
    import torch: the PNGs it moves are those the folder's scores put over the threshold;
    --undo puts every byte back."""
    from maintenance_export import assert_fsz_match_folders, build_export, pngs, snapshot

    export = build_export(tmp_path / "export", {0: pngs(6, 7, "a"), 1: pngs(4, 8, "b")})
    before = snapshot(export)
    prompts, clear = CHECK["prompts"][:2], CHECK["prompts"][2]
    files = sorted(export.glob(f"faceset_00*/{layout.CROPS_DIR}/*.png"))
    spec = clip.ClipSpec("m", "t", tmp_path, TINY_FOLDER)
    scorer = clip.ClipScorer(spec, ["CPUExecutionProvider"])
    pixels = np.stack([scorer.pixels(Image.open(p)) for p in files])
    occlusion = scorer.score(pixels, [*prompts, clear])[:, :2].sum(axis=1)
    ordered = np.sort(occlusion)
    threshold = float((ordered[-3] + ordered[-4]) / 2)  # the three most occluded PNGs
    assert ordered[-3] - ordered[-4] > 2e-4
    wanted = {files[i].name for i in np.flatnonzero(occlusion >= threshold)}
    blocker = torch_free_pythonpath(tmp_path / "lean")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    common = ["--model-root", str(model_root), "--model-pack", "facepack-mini", "--json"]
    flags = ["--threshold", f"{threshold:.6f}", "--faceset-fraction", "1.0"]
    flags += [arg for prompt in prompts for arg in ("--prompt", prompt)]
    flags += ["--clear-prompt", clear, "--clip-dir", str(TINY_FOLDER)]
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
    assert not {"torch", "open_clip"} & set(blocked_attempts(blocker))
    undone = run_facesets("occlusion", str(export), "--undo", "--json", env=env)
    assert undone.returncode == 0, undone.stderr[-3000:]
    assert len(json.loads(undone.stdout)["restored"]) == 3
    assert snapshot(export) == before


def test_export_without_torch_says_what_to_install(tmp_path: Path) -> None:
    blocker = torch_free_pythonpath(tmp_path / "lean")
    done = subprocess.run(
        [*FACESETS, "clip", "export", "ViT-L-14", "dfn2b_s39b", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(blocker)},
    )
    assert done.returncode == 1
    assert "needs open_clip and torch" in done.stderr
    assert "pip install 'facesets[clip-export]'" in done.stderr
    assert not (tmp_path / "x" / clip.META_FILE).exists()


# --- with torch: the export against open_clip, live ------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


def _photos(lfw_dir: Path) -> list[Image.Image]:
    paths = sorted((lfw_dir / "Colin_Powell").glob("*.jpg"))[:3]
    images = [Image.open(p).convert("RGB") for p in paths]
    images.append(images[0].crop((60, 40, 190, 230)).resize((97, 141)))  # not square
    images.append(images[1].crop((0, 0, 21, 13)))  # smaller than the input: upscaled
    return images


@needs_torch
def test_export_equals_open_clip_through_the_service(
    tiny: TinyClip, lfw_dir: Path, model_root: Path, tmp_path: Path
) -> None:
    """`facesets clip export` of a random open_clip model with the full BPE vocabulary: the
    folder's tokens equal open_clip's, its pixels are within 1/255, and the service's scores
    equal open_clip's to 1e-4."""
    folder = tmp_path / "exported"
    done = run_facesets(*tiny.export_args(folder))
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(folder) in done.stdout
    meta = clip.read_meta(folder)
    prompts = [*PROMPTS, *CHECK["token_prompts"]]
    ours = BpeTokenizer.from_meta(folder, meta.tokenizer)
    np.testing.assert_array_equal(ours(prompts), tiny.tokenizer(prompts).numpy())
    images = _photos(lfw_dir)
    pixels = np.stack([Preprocess.from_meta(meta.preprocess)(image) for image in images])
    theirs = np.stack([tiny.preprocess(image).numpy() for image in images])
    assert np.abs(pixels - theirs).max() <= 1 / 255 / min(meta.preprocess.std)
    service = _inference(model_root, tmp_path / "inference.log", "--clip-dir", str(folder))
    service.start()
    try:
        requests = [
            inference_pb2.ClipScoreRequest(
                image=common_pb2.ImageRequest(id=f"img{i}", data=_png(image)),
                prompts=PROMPTS if i == 0 else [],
            )
            for i, image in enumerate(images)
        ]
        _, by_id, info = _score(service, requests)
    finally:
        service.stop()
    got = np.array([list(by_id[f"img{i}"].scores) for i in range(len(images))])
    expected = tiny.probabilities(images, PROMPTS)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.ptp(expected, axis=1).max() > 0.05
    assert info.clip_model == "facesets-tiny-clip" and info.clip_pretrained == "tiny-clip.pt"


@needs_torch
def test_export_of_missing_weights_says_what_to_fetch_and_where(tmp_path: Path) -> None:
    cache, out = tmp_path / "clip-cache", tmp_path / "out"
    done = run_facesets(
        "clip", "export", "ViT-L-14", "dfn2b_s39b", "--cache", str(cache), "--out", str(out),
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 1
    message = done.stderr
    assert "ViT-L-14 / dfn2b_s39b" in message
    assert "apple/DFN2B-CLIP-ViT-L-14-39B" in message
    assert str(cache) in message
    assert "create_model_and_transforms" in message
    assert "facesets clip export ViT-L-14 PATH/TO/CHECKPOINT" in message
    assert not (out / clip.META_FILE).exists()


def _tampered_folder(at: Path, change: Any) -> Path:
    """A copy of the committed export with its meta.json changed by `change(meta)`."""
    import shutil

    shutil.copytree(TINY_FOLDER, at)
    meta = json.loads((at / clip.META_FILE).read_text())
    change(meta)
    (at / clip.META_FILE).write_text(json.dumps(meta))
    return at


def test_an_export_whose_meta_names_other_files_or_bad_values_is_refused(
    model_root: Path, tmp_path: Path
) -> None:
    """meta.json is checked as any file found on disk: `facesets doctor` names the key at fault
    and `facesets occlusion` (through its own inference service) scores nothing with a folder
    whose vocabulary lies outside it, even one that would load."""
    from maintenance_export import build_export, pngs, snapshot

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / clip.VOCAB_FILE).write_bytes((TINY_FOLDER / clip.VOCAB_FILE).read_bytes())

    def set_in(section: str | None, key: str, value: object) -> Any:
        def change(meta: dict[str, Any]) -> None:
            (meta if section is None else meta[section])[key] = value

        return change

    cases = {
        "tokenizer.vocab": set_in("tokenizer", "vocab", f"../outside/{clip.VOCAB_FILE}"),
        "preprocess.size": set_in("preprocess", "size", [0, 32]),
        "preprocess.std": set_in("preprocess", "std", [0.2, 0.0, 0.2]),
        "logit_scale": set_in(None, "logit_scale", -1),
        "tokenizer.context_length": set_in("tokenizer", "context_length", "long"),
        "preprocess.interpolation": set_in("preprocess", "interpolation", "lanczos9"),
    }
    for key, change in cases.items():
        folder = _tampered_folder(tmp_path / key, change)
        shown = run_facesets(
            "doctor", "--model-root", str(model_root), "--model-pack", "facepack-mini",
            "--clip-dir", str(folder), timeout=120,
        )  # fmt: skip
        line = next(row for row in shown.stdout.splitlines() if " CLIP: " in row)
        assert line.startswith(("WARN", "INFO")), (key, line)
        assert f"{folder / clip.META_FILE} is not what an export writes ({key}:" in line, line
        assert f"facesets clip export facesets-small-vocab-clip tiny-clip.pt --out {folder}" in line

    # The folder's files are plain files: a tower that is a link is refused too.
    linked = _tampered_folder(tmp_path / "linked", lambda meta: None)
    (linked / clip.IMAGE_FILE).unlink()
    (linked / clip.IMAGE_FILE).symlink_to(TINY_FOLDER / clip.IMAGE_FILE)
    shown = run_facesets(
        "doctor", "--model-root", str(model_root), "--model-pack", "facepack-mini",
        "--clip-dir", str(linked), timeout=120,
    )  # fmt: skip
    assert f"{linked / clip.IMAGE_FILE} is a link" in shown.stdout

    export = build_export(tmp_path / "export", {0: pngs(3, 7, "a")})
    before = snapshot(export)
    folder = tmp_path / "tokenizer.vocab"
    done = run_facesets(
        "occlusion", str(export), "--clip-dir", str(folder), "--model-root", str(model_root),
        "--model-pack", "facepack-mini",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "FAILED_PRECONDITION" in done.stderr and "tokenizer.vocab" in done.stderr
    assert snapshot(export) == before
