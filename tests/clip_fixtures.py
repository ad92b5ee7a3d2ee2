"""A tiny randomly initialised open_clip model, built through open_clip's own API.

Its architecture config goes into CACHE/model_configs/ (where `facesets clip export` reads custom
architectures) and its weights into a checkpoint file, the TAG of `facesets clip export`.
`merges` builds it with the first merges of open_clip's BPE vocabulary only (a small token
embedding, for the exported folder committed under tests/data).
"""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TINY_ARCH = "facesets-tiny-clip"
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
# The committed folder's model: a few hundred KB in all.
SMALL_ARCH = "facesets-small-vocab-clip"
SMALL_CONFIG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "width": 32, "heads": 2, "layers": 1},
}
SMALL_MERGES = 600


@dataclass
class TinyClip:
    arch: str
    cache: Path
    checkpoint: Path
    model: Any  # open_clip.CLIP, eval mode
    preprocess: Any
    tokenizer: Any

    def export_args(self, out: Path) -> list[str]:
        """`facesets clip export` of this model into `out`."""
        return ["clip", "export", self.arch, str(self.checkpoint), "--cache", str(self.cache)] + [
            "--out",
            str(out),
        ]

    def probabilities(self, images: list[Any], prompts: list[str]) -> Any:
        """open_clip's own computation: softmax over prompts of scaled cosine similarities."""
        import torch

        pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        with torch.no_grad():
            image_features, text_features, scale = self.model(pixels, self.tokenizer(prompts))
            return (scale * image_features @ text_features.T).softmax(dim=-1).numpy()


def make_tiny_clip(folder: Path, seed: int = 0, merges: int | None = None) -> TinyClip:
    import open_clip
    import torch
    from open_clip.tokenizer import default_bpe

    cache = folder / "clip-cache"
    configs = cache / "model_configs"
    configs.mkdir(parents=True, exist_ok=True)
    arch, config = TINY_ARCH, copy.deepcopy(TINY_CONFIG)
    if merges is not None:
        arch, config = SMALL_ARCH, copy.deepcopy(SMALL_CONFIG)
        with gzip.open(default_bpe()) as full:
            lines = full.read().decode("utf-8").split("\n")[: merges + 1]
        vocab = folder / "bpe-small.txt.gz"
        vocab.write_bytes(gzip.compress("\n".join(lines).encode("utf-8"), mtime=0))
        config["text_cfg"]["vocab_size"] = 512 + merges + 2
        config["text_cfg"]["tokenizer_kwargs"] = {"bpe_path": str(vocab)}
    (configs / f"{arch}.json").write_text(json.dumps(config))
    open_clip.add_model_config(configs / f"{arch}.json")
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    with torch.no_grad():  # a sharper logit scale than the init makes probabilities differ
        model.logit_scale.fill_(float(torch.log(torch.tensor(50.0))))
    model.eval()
    checkpoint = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return TinyClip(arch, cache, checkpoint, model, preprocess, open_clip.get_tokenizer(arch))


# The exported folder committed for the tests, made by scripts/make_tiny_clip.py, and open_clip's
# answers for it (token ids and probabilities of sample images).
DATA = Path(__file__).resolve().parent / "data"
TINY_FOLDER = DATA / "tiny-clip"
TINY_IMAGES = DATA / "tiny-clip-images"
TINY_CHECK = DATA / "tiny-clip-check.json"
TORCH_FREE_BLOCKED = ("torch", "torchvision", "open_clip", "ftfy", "regex")

_BLOCKER = '''"""Installed by the tests: these packages cannot be imported, as on a lean install."""
import importlib.abc
import sys

BLOCKED = {blocked!r}
LOG = {log!r}


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(LOG, "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed here)", name=name)
        return None


sys.meta_path.insert(0, _Blocked())
'''


def torch_free_pythonpath(folder: Path, blocked: tuple[str, ...] = TORCH_FREE_BLOCKED) -> Path:
    """A folder to put first on PYTHONPATH: its sitecustomize makes `blocked` unimportable in
    every Python started with it (and logs each attempt to folder/attempts.log)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "attempts.log"
    (folder / "sitecustomize.py").write_text(_BLOCKER.format(blocked=set(blocked), log=str(log)))
    return folder


def blocked_attempts(folder: Path) -> list[str]:
    log = folder / "attempts.log"
    return log.read_text().split() if log.exists() else []
