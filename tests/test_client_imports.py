"""The client library imports with grpcio, protobuf and numpy alone: no service code, no OpenCV,
no model runtimes, no CLI libraries."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np

from facesets.client.png import encode_png

# Top-level names the client library must not need; refused at import time in a fresh interpreter.
REFUSED = (
    "cv2",
    "insightface",
    "onnxruntime",
    "onnx",
    "PIL",
    "sklearn",
    "scipy",
    "tqdm",
    "structlog",
    "httpx",
    "filelock",
    "grpc_health",
    "grpc_reflection",
    "grpc_tools",
    "facesets.common",
    "facesets.inference",
    "facesets.clustering",
    "facesets.export",
    "facesets.orchestrator",
)

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    REFUSED = {refused!r}

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if any(name == r or name.startswith(r + ".") for r in REFUSED):
                raise ImportError(f"the client library imported {{name}}")
            return None

    sys.meta_path.insert(0, Refuse())
    import facesets.client
    loaded = ["facesets.client"]
    for module in pkgutil.iter_modules(facesets.client.__path__, "facesets.client."):
        importlib.import_module(module.name)
        loaded.append(module.name)
    from facesets.client import ClusteringClient, Endpoint, ExportClient, InferenceClient
    client = InferenceClient(Endpoint("127.0.0.1:9"))
    client.close()
    print(json.dumps(loaded))
    """
)


def test_client_library_imports_without_service_code_or_heavy_dependencies() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(refused=REFUSED)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.strip()
    for module in ("channel", "clustering", "export", "inference", "resumable", "png"):
        assert f'"facesets.client.{module}"' in loaded


def test_the_blocker_refuses_what_it_names() -> None:
    """The probe would catch a client module importing service code (it is not a no-op)."""
    probe = PROBE.format(refused=REFUSED).replace(
        "import facesets.client\n", "import facesets.client\nimport facesets.common.settings\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "the client library imported facesets.common" in done.stderr


def test_png_crops_decode_to_the_same_pixels() -> None:
    rng = np.random.default_rng(7)
    for shape in [(31, 17, 3), (12, 9), (8, 5, 4)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = cv2.imdecode(np.frombuffer(encode_png(image), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(decoded, image)
