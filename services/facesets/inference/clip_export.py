"""`facesets clip export`: an open_clip model made into a folder the inference service scores
with, without torch.

open_clip builds the model (architecture + pretrained tag, or a checkpoint file); its image and
text towers are exported to ONNX, its tokenizer's BPE merges saved gzipped beside them and its
eval preprocessing settings and logit scale in meta.json. Before meta.json is written the folder
is checked against open_clip itself: the same token ids, pixels within 1/255 and features within
1e-4 on sample prompts and images. This is the only module that imports torch and open_clip.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from PIL import Image

from facesets.inference.clip import (
    CONFIGS_SUBDIR,
    EXPORT_EXTRA_HINT,
    EXPORT_VERSION,
    IMAGE_FILE,
    META_FILE,
    TEXT_FILE,
    VOCAB_FILE,
    ClipMeta,
    ClipUnavailable,
    export_command,
)
from facesets.inference.clip_prep import SPECIAL_TOKENS, BpeTokenizer, Preprocess, write_merges

log = structlog.get_logger(__name__)

CHECK_PROMPTS = (
    "a face wearing a medical mask",
    "A person's face, partly hidden by a HAND!",
    "sunglasses 2024 — “curly quotes” & emoji 🙂",
)
CHECK_TOLERANCE = 1e-4


class ExportError(ClipUnavailable):
    """The export cannot be made here; the message says why and what to do."""


@dataclass(frozen=True)
class ExportRequest:
    model: str  # open_clip architecture (custom ones: CACHE/model_configs/NAME.json)
    pretrained: str  # open_clip pretrained tag or a checkpoint file
    cache_dir: Path  # where open_clip keeps downloaded weights
    out: Path


def _versions() -> dict[str, str]:
    found = {}
    for name in ("facesets", "open_clip_torch", "torch", "onnx", "onnxruntime"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def import_open_clip() -> Any:
    try:
        import open_clip
        import torch  # noqa: F401  # open_clip needs it; a clear message when it is absent
    except ImportError as error:
        raise ExportError(
            f"`facesets clip export` needs open_clip and torch, which are not installed "
            f"({error}). Install them with: {EXPORT_EXTRA_HINT}"
        ) from error
    return open_clip


def register_configs(open_clip: Any, cache_dir: Path) -> None:
    """Custom architectures: every CACHE/model_configs/NAME.json becomes architecture NAME."""
    folder = cache_dir / CONFIGS_SUBDIR
    if folder.is_dir():
        for config in sorted(folder.glob("*.json")):
            open_clip.add_model_config(config)


def _missing_weights(open_clip: Any, request: ExportRequest, error: Exception) -> ExportError:
    source = ""
    try:
        config = open_clip.get_pretrained_cfg(request.model, request.pretrained)
        hub = config.get("hf_hub") or config.get("url") or ""
        source = f" (open_clip fetches them from {hub})" if hub else ""
    except Exception:  # an unknown tag: the message below still says what was asked for
        pass
    return ExportError(
        f"the CLIP weights {request.model} / {request.pretrained} could not be loaded: {error}. "
        f"Run the export where the network reaches them{source}, or fetch them there with\n"
        f'    python -c "import open_clip; open_clip.create_model_and_transforms('
        f"'{request.model}', pretrained='{request.pretrained}', cache_dir='CACHE')\"\n"
        f"and copy CACHE's contents into {request.cache_dir} (--cache), or give a checkpoint "
        f"file instead of the tag: {export_command(request.model, 'PATH/TO/CHECKPOINT')}"
    )


def _build_model(open_clip: Any, request: ExportRequest) -> Any:
    if open_clip.get_model_config(request.model) is None:
        raise ExportError(
            f"unknown open_clip architecture '{request.model}'. Custom architectures are read "
            f"from {request.cache_dir / CONFIGS_SUBDIR}/NAME.json"
        )
    checkpoint = Path(request.pretrained).expanduser()
    if not checkpoint.is_file():
        config = open_clip.get_pretrained_cfg(request.model, request.pretrained)
        if not config:
            known = ", ".join(open_clip.list_pretrained_tags_by_model(request.model)) or "none"
            raise ExportError(
                f"'{request.pretrained}' is neither a checkpoint file nor a pretrained tag of "
                f"{request.model} (tags: {known})"
            )
        try:  # the weights first: their absence is told before a large model is built
            open_clip.pretrained.download_pretrained(config, cache_dir=str(request.cache_dir))
        except Exception as error:  # offline, or the hub refused
            raise _missing_weights(open_clip, request, error) from error
    pretrained = str(checkpoint) if checkpoint.is_file() else request.pretrained
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            request.model, pretrained=pretrained, cache_dir=str(request.cache_dir)
        )
    except Exception as error:  # a damaged or mismatched checkpoint
        raise _missing_weights(open_clip, request, error) from error
    model.eval()
    return model, preprocess


def _tokenizer_spec(open_clip: Any, model: str) -> tuple[dict[str, Any], Any, list[Any]]:
    """What the folder's tokenizer needs: open_clip's SimpleTokenizer (CLIP BPE) only."""
    tokenizer = open_clip.get_tokenizer(model)
    simple = open_clip.tokenizer.SimpleTokenizer
    if not isinstance(tokenizer, simple) or tokenizer.reduction_fn is not None:
        raise ExportError(
            f"{model} uses {type(tokenizer).__name__}"
            + (" with a reduction mask" if isinstance(tokenizer, simple) else "")
            + "; only models with open_clip's CLIP BPE tokenizer (SimpleTokenizer) export"
        )
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)
    first_special = 512 + len(merges)
    specials = [tokenizer.decoder[i] for i in range(first_special, len(tokenizer.decoder))]
    clean = {
        "_clean_lower": "lower",
        "_clean_whitespace": "whitespace",
        "_clean_canonicalize": "canonicalize",
    }.get(getattr(tokenizer.clean_fn, "__name__", ""))
    if clean is None or specials[:2] != list(SPECIAL_TOKENS):
        raise ExportError(f"{model}'s tokenizer is set up in a way this export does not know")
    spec = {
        "kind": "clip-bpe",
        "vocab": VOCAB_FILE,
        "merges": len(merges),
        "context_length": int(tokenizer.context_length),
        "clean": clean,
        "special_tokens": specials,
        "sot": int(tokenizer.sot_token_id),
        "eot": int(tokenizer.eot_token_id),
    }
    return spec, tokenizer, merges


def _export_onnx(model: Any, folder: Path, size: tuple[int, int], tokens: Any) -> None:
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model  # a submodule, so its weights export as initializers

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_image(pixels, normalize=True)

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_text(tokens, normalize=True)

    towers: tuple[tuple[str, torch.nn.Module, torch.Tensor], ...] = (
        (IMAGE_FILE, ImageTower(), torch.zeros(1, 3, *size)),
        (TEXT_FILE, TextTower(), tokens),
    )
    # Not under no_grad: in eval mode without autograd, torch takes fused attention kernels
    # that the ONNX exporter cannot translate.
    for name, tower, example in towers:
        partial = folder / f"{name}.partial"
        torch.onnx.export(
            tower,
            (example,),
            str(partial),
            dynamo=False,  # the TorchScript exporter needs nothing beyond torch and onnx
            input_names=["input"],
            output_names=["features"],
            dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17,
        )
        partial.replace(folder / name)


def _check_images() -> list[Image.Image]:
    """Sample images of several shapes and modes (crop, padding and mode paths)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(150, 113, 3), dtype=np.uint8)
    wide = Image.fromarray(noise).resize((301, 97))
    return [
        Image.fromarray(noise),
        wide,
        Image.fromarray(noise[:20, :31]),
        Image.fromarray(noise[..., 0]).convert("L"),
        Image.fromarray(np.dstack([noise, noise[..., :1]]), "RGBA"),
    ]


def _check(
    folder: Path, model: Any, preprocess: Any, tokenizer: Any, meta: ClipMeta
) -> dict[str, float]:
    """The folder against open_clip: ValueError on any difference beyond the tolerances."""
    import onnxruntime as ort
    import torch

    ours = BpeTokenizer.from_meta(folder, meta.tokenizer)
    theirs = tokenizer(list(CHECK_PROMPTS)).numpy()
    if not np.array_equal(ours(list(CHECK_PROMPTS)), theirs):
        raise ValueError("the exported tokenizer gives other token ids than open_clip's")
    ours_pre = Preprocess.from_meta(meta.preprocess)
    images = _check_images()
    pixels = np.stack([ours_pre(image) for image in images])
    expected_pixels = torch.stack([preprocess(image.convert("RGB")) for image in images]).numpy()
    pixel_step = 1 / 255 / min(ours_pre.std)  # one grey level, normalised
    pixel_error = float(np.abs(pixels - expected_pixels).max())
    if pixel_error > pixel_step:
        raise ValueError(f"preprocessed pixels differ from open_clip's by {pixel_error:.3g}")
    cpu = ["CPUExecutionProvider"]
    image_tower = ort.InferenceSession(str(folder / IMAGE_FILE), providers=cpu)
    text_tower = ort.InferenceSession(str(folder / TEXT_FILE), providers=cpu)
    got_image = image_tower.run(None, {"input": expected_pixels})[0]
    got_text = text_tower.run(None, {"input": theirs.astype(np.int64)})[0]
    with torch.no_grad():
        want_image = model.encode_image(torch.from_numpy(expected_pixels), normalize=True).numpy()
        want_text = model.encode_text(torch.from_numpy(theirs), normalize=True).numpy()
    errors = {
        "pixels": pixel_error,
        "image_features": float(np.abs(got_image - want_image).max()),
        "text_features": float(np.abs(got_text - want_text).max()),
    }
    for name in ("image_features", "text_features"):
        if errors[name] > CHECK_TOLERANCE:
            raise ValueError(f"the exported {name} differ from open_clip's by {errors[name]:.3g}")
    return errors


def export(request: ExportRequest) -> ClipMeta:
    """Write request.out (image.onnx, text.onnx, the vocabulary, meta.json last); returns meta.

    A folder whose meta.json is missing is incomplete: meta.json goes first when a folder is
    exported again and is written last, after the check against open_clip."""
    open_clip = import_open_clip()
    register_configs(open_clip, request.cache_dir)
    model, preprocess = _build_model(open_clip, request)
    tokenizer_spec, tokenizer, merges = _tokenizer_spec(open_clip, request.model)
    config = dict(model.visual.preprocess_cfg)
    size = config["size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    folder = request.out
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).unlink(missing_ok=True)
    _export_onnx(model, folder, size, tokenizer(["a face"]))
    partial = folder / f"{VOCAB_FILE}.partial"
    write_merges(merges, partial)
    partial.replace(folder / VOCAB_FILE)
    checkpoint = Path(request.pretrained).expanduser()
    meta = ClipMeta.model_validate(
        {
            "version": EXPORT_VERSION,
            "model": request.model,
            "pretrained": checkpoint.name if checkpoint.is_file() else request.pretrained,
            "logit_scale": float(model.logit_scale.exp().item()),
            "preprocess": {
                "size": list(size),
                "mean": list(config["mean"]),
                "std": list(config["std"]),
                "interpolation": config.get("interpolation") or "bicubic",
                "resize_mode": config.get("resize_mode") or "shortest",
                "fill_color": int(config.get("fill_color", 0)),
            },
            "tokenizer": tokenizer_spec,
            "exported_with": _versions(),
        }
    )
    meta = meta.model_copy(update={"checked": _check(folder, model, preprocess, tokenizer, meta)})
    tmp = folder / f"{META_FILE}.partial"
    text = json.dumps(meta.model_dump(mode="json"), indent=2, ensure_ascii=False)
    tmp.write_text(text + "\n")
    tmp.replace(folder / META_FILE)  # written last: its presence means the export is whole
    log.info("exported CLIP model", model=request.model, folder=str(folder))
    return meta


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def remove_partials(folder: Path) -> None:
    """What an interrupted export left (each file is renamed into place once written)."""
    if folder.is_dir():
        for leftover in folder.glob("*.partial"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
