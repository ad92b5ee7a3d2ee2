"""A tiny randomly initialised open_clip model, built through open_clip's own API.

Its architecture config goes into CACHE/model_configs/ (where the inference service reads custom
architectures) and its weights into a checkpoint file passed as --clip-pretrained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TINY_ARCH = "facesets-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@dataclass
class TinyClip:
    cache: Path
    checkpoint: Path
    model: Any  # open_clip.CLIP, eval mode
    preprocess: Any
    tokenizer: Any

    def service_flags(self) -> list[str]:
        return [
            "--clip-model",
            TINY_ARCH,
            "--clip-pretrained",
            str(self.checkpoint),
            "--clip-cache",
            str(self.cache),
        ]

    def probabilities(self, images: list[Any], prompts: list[str]) -> Any:
        """open_clip's own computation: softmax over prompts of scaled cosine similarities."""
        import torch

        pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        with torch.no_grad():
            image_features, text_features, scale = self.model(pixels, self.tokenizer(prompts))
            return (scale * image_features @ text_features.T).softmax(dim=-1).numpy()


def make_tiny_clip(folder: Path, seed: int = 0) -> TinyClip:
    import open_clip
    import torch

    cache = folder / "clip-cache"
    configs = cache / "model_configs"
    configs.mkdir(parents=True, exist_ok=True)
    (configs / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(configs / f"{TINY_ARCH}.json")
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_ARCH, pretrained=None)
    with torch.no_grad():  # a sharper logit scale than the init makes probabilities differ
        model.logit_scale.fill_(float(torch.log(torch.tensor(50.0))))
    model.eval()
    checkpoint = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return TinyClip(cache, checkpoint, model, preprocess, open_clip.get_tokenizer(TINY_ARCH))
