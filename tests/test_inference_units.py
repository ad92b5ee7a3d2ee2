"""Inference internals: reduced JPEG decoding, batched recognition, the missing-pack error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from images import large_canvas
from onnx import numpy_helper

from facesets.common.decode import decode
from facesets.common.settings import InferenceSettings
from facesets.inference.models import ModelPackError, load_pack, pack_folder
from facesets.inference.pipeline import FacePipeline, Mode
from facesets.v1 import common_pb2


def test_jpeg_decoded_no_larger_than_the_detector_needs(lfw_dir):
    data = large_canvas([lfw_dir / "Colin_Powell" / "Colin_Powell_0001.jpg"])
    reduced = decode(data, 10**9, long_side=640)
    assert reduced.scale == 0.25 and reduced.bgr.shape == (750, 1000, 3)
    assert (reduced.width, reduced.height) == (4000, 3000)
    full = decode(data, 10**9)
    assert full.scale == 1.0 and full.bgr.shape == (3000, 4000, 3)


def _dynamic_batch_pack(mini: Path, root: Path) -> Path:
    """The mini pack with its recognizer's batch axis made dynamic (same weights)."""
    folder = root / "models" / "dynamic-mini"
    folder.mkdir(parents=True)
    shutil.copy(mini / "det_scrfd_2.5g_bnkps.onnx", folder)
    model = onnx.load(str(mini / "rec_mobilefacenet.onnx"))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == "/Constant_output_0":
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([-1, 128], np.int64)))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(model, str(folder / "rec_mobilefacenet.onnx"))
    return folder


def _counting_batches(pack) -> list[int]:
    batches: list[int] = []
    get_feat = pack.recognizer.model.get_feat

    def counting(images):
        batches.append(len(images))
        return get_feat(images)

    pack.recognizer.model.get_feat = counting
    return batches


def test_recognition_batching_follows_the_device(model_root, lfw_dir, tmp_path):
    """On an accelerator a dynamic-batch recognizer takes faces from several images per call;
    on CPU each worker embeds its own image's faces. The embeddings are the same either way."""
    _dynamic_batch_pack(model_root / "models" / "facepack-mini", tmp_path)
    fixed = load_pack(model_root, "facepack-mini", ["CPUExecutionProvider"], 640, 0.5)
    on_cpu = load_pack(tmp_path, "dynamic-mini", ["CPUExecutionProvider"], 640, 0.5)
    on_device = load_pack(tmp_path, "dynamic-mini", ["CPUExecutionProvider"], 640, 0.5)
    # The accelerator's policy, exercised on the CPU session (no GPU here).
    on_device.accelerated = True
    assert not fixed.recognizer.dynamic_batch and on_cpu.recognizer.dynamic_batch
    assert not on_cpu.accelerated
    cpu_batches, device_batches = _counting_batches(on_cpu), _counting_batches(on_device)
    photos = sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[:8]
    requests = [common_pb2.ImageRequest(id=str(p), path=str(p)) for p in photos]
    config = InferenceSettings(model_root=tmp_path, model_pack="dynamic-mini")
    results = []
    for pack in (fixed, on_cpu, on_device):
        pipeline = FacePipeline(pack, config, 1 << 26)
        results.append({o.id: o for o in pipeline.run(iter(requests), Mode.EMBED)})
        pipeline.close()
    faces_per_image = [len(o.faces) for o in results[1].values()]
    assert max(device_batches) > max(faces_per_image)  # faces of several images in one call
    assert sorted(cpu_batches) == sorted(n for n in faces_per_image if n)  # one call per image
    assert sum(device_batches) == sum(cpu_batches) == sum(faces_per_image)
    for image_id, outcome in results[0].items():
        for other in results[1:]:
            for a, b in zip(outcome.faces, other[image_id].faces, strict=True):
                va, vb = np.frombuffer(a.embedding, "<f4"), np.frombuffer(b.embedding, "<f4")
                assert float(va @ vb) > 0.9999


def test_missing_model_pack_names_the_folder_to_fill(tmp_path):
    with pytest.raises(ModelPackError) as caught:
        pack_folder(tmp_path, "facesets-no-such-pack")
    assert str(tmp_path / "models" / "facesets-no-such-pack") in str(caught.value)
