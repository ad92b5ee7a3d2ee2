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


def test_recognition_batches_faces_across_images_when_the_batch_is_dynamic(
    model_root, lfw_dir, tmp_path
):
    _dynamic_batch_pack(model_root / "models" / "facepack-mini", tmp_path)
    fixed = load_pack(model_root, "facepack-mini", ["CPUExecutionProvider"], 640, 0.5)
    dynamic = load_pack(tmp_path, "dynamic-mini", ["CPUExecutionProvider"], 640, 0.5)
    assert not fixed.recognizer.dynamic_batch and dynamic.recognizer.dynamic_batch
    batches: list[int] = []
    get_feat = dynamic.recognizer.model.get_feat

    def counting(images):
        batches.append(len(images))
        return get_feat(images)

    dynamic.recognizer.model.get_feat = counting
    photos = sorted((lfw_dir / "Tony_Blair").glob("*.jpg"))[:8]
    requests = [common_pb2.ImageRequest(id=str(p), path=str(p)) for p in photos]
    config = InferenceSettings(model_root=tmp_path, model_pack="dynamic-mini")
    results = {}
    for pack in (fixed, dynamic):
        pipeline = FacePipeline(pack, config, 1 << 26)
        results[pack.name] = {o.id: o for o in pipeline.run(iter(requests), Mode.EMBED)}
        pipeline.close()
    assert max(batches) > 1  # several faces, from several images, in one model call
    assert sum(batches) == sum(len(o.faces) for o in results["dynamic-mini"].values())
    for image_id, outcome in results["facepack-mini"].items():
        for a, b in zip(outcome.faces, results["dynamic-mini"][image_id].faces, strict=True):
            va, vb = np.frombuffer(a.embedding, "<f4"), np.frombuffer(b.embedding, "<f4")
            assert float(va @ vb) > 0.9999


def test_missing_model_pack_names_the_folder_to_fill(tmp_path):
    with pytest.raises(ModelPackError) as caught:
        pack_folder(tmp_path, "facesets-no-such-pack")
    assert str(tmp_path / "models" / "facesets-no-such-pack") in str(caught.value)
