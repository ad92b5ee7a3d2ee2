"""The occlusion filter's real scorer: ClipScore on the inference service."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facesets.client import ImageInput, InferenceClient


class ClipScoreScorer:
    """(PNG paths, prompts) -> probabilities, the PNGs sent as bytes (the inference service
    may run on another machine)."""

    def __init__(self, inference: InferenceClient) -> None:
        self.inference = inference

    def __call__(self, paths: Sequence[Path], prompts: Sequence[str]) -> np.ndarray:
        images = [ImageInput(id=str(i), data=Path(p).read_bytes()) for i, p in enumerate(paths)]
        return self.inference.clip_scores(images, list(prompts))
