"""Maintenance jobs' calls to the inference service: ClipScore, CountFaces, Embed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facesets.client import ImageInput, InferenceClient
from facesets.common.beneath import Beneath


def _read(root: Path | None, path: Path) -> bytes:
    """A PNG's bytes; inside an export (`root`) read without following any link."""
    if root is None:
        return Path(path).read_bytes()
    return Beneath(root).read_bytes(Path(path).absolute().relative_to(root).as_posix())


class ClipScoreScorer:
    """(PNG paths, prompts) -> probabilities, the PNGs sent as bytes (the inference service
    may run on another machine)."""

    def __init__(self, inference: InferenceClient, root: Path | None = None) -> None:
        self.inference = inference
        self.root = root

    def __call__(self, paths: Sequence[Path], prompts: Sequence[str]) -> np.ndarray:
        images = [ImageInput(id=str(i), data=_read(self.root, p)) for i, p in enumerate(paths)]
        return self.inference.clip_scores(images, list(prompts))


class InferenceFaces:
    """dedup-optimize's face count and embeddings, from CountFaces and Embed."""

    def __init__(self, inference: InferenceClient, root: Path | None = None) -> None:
        self.inference = inference
        self.root = root

    def _inputs(self, paths: Sequence[Path]) -> list[ImageInput]:
        return [ImageInput(id=str(i), data=_read(self.root, p)) for i, p in enumerate(paths)]

    def count_faces(self, paths: Sequence[Path]) -> list[int]:
        counts = [0] * len(paths)
        for result in self.inference.count_faces_stream(self._inputs(paths)):
            if result.HasField("error"):
                raise RuntimeError(
                    f"CountFaces failed for {paths[int(result.id)]}: {result.error.message}"
                )
            counts[int(result.id)] = result.count
        return counts

    def embed(self, paths: Sequence[Path]) -> np.ndarray:
        """The unit embedding of each PNG's largest face (each holds one: audited first)."""
        rows: dict[int, np.ndarray] = {}
        for result in self.inference.embed(self._inputs(paths)):
            index = int(result.id)
            if result.HasField("error") or not result.faces:
                raise RuntimeError(f"no face embedded in {paths[index]}")
            face = max(
                result.faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])
            )
            vector = np.frombuffer(face.embedding, dtype="<f4").astype(np.float32)
            rows[index] = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return np.stack([rows[i] for i in range(len(paths))])
