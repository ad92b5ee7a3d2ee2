"""Zero-shot CLIP scoring (ClipScore): open_clip models run as ONNX towers on ONNX Runtime.

open_clip builds the model (architecture + pretrained tag, or a checkpoint file) once; its
image and text towers are exported to ONNX into the CLIP cache folder beside the weights and
then run on ONNX Runtime with the same provider policy and session options as the face models,
so DirectML, CUDA and CPU all work from one code path. Later starts load the cached towers and
never touch the weights. torch and open_clip are still imported for open_clip's own tokenizer
and image preprocessing, so probabilities equal open_clip's computation.

Nothing here is imported unless ClipScore is used: without torch/open_clip installed the service
runs and ClipScore answers FAILED_PRECONDITION saying what to install.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import structlog
from PIL import Image

from facesets.common import settings
from facesets.inference.session import providers_in_use, session_options

log = structlog.get_logger(__name__)

INSTALL_HINT = (
    "pip install 'facesets[clip]' torch==2.14.1 torchvision==0.29.1 "
    "(or the torch build for this machine)"
)
CONFIGS_SUBDIR = "model_configs"  # custom architectures: open_clip JSON configs, by name
ONNX_SUBDIR = "onnx"
META_FILE = "meta.json"
EXPORT_VERSION = 1  # bump when the exported graphs change


class ClipUnavailable(Exception):
    """ClipScore cannot run here; the message says what to install or fetch, and where."""


@dataclass(frozen=True)
class ClipSpec:
    model: str  # open_clip architecture name
    pretrained: str  # open_clip pretrained tag, a checkpoint file, or "" for random weights
    cache_dir: Path

    def checkpoint(self) -> Path | None:
        path = Path(self.pretrained).expanduser()
        return path if self.pretrained and path.is_file() else None

    def export_dir(self) -> Path:
        """Where the exported towers of this model live (a checkpoint file is keyed by content)."""
        checkpoint = self.checkpoint()
        if checkpoint is not None:
            digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
            tag = f"file-{digest}"
        else:
            tag = self.pretrained or "random"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{self.model}--{tag}")
        return self.cache_dir / ONNX_SUBDIR / safe


def _import_open_clip() -> Any:
    try:
        import open_clip
        import torch  # noqa: F401  # open_clip needs it; a clear message when it is absent
    except ImportError as error:
        raise ClipUnavailable(
            f"ClipScore needs open_clip and torch, which are not installed ({error}). "
            f"Install them with: {INSTALL_HINT}"
        ) from error
    return open_clip


def register_configs(open_clip: Any, cache_dir: Path) -> None:
    """Custom architectures: every CACHE/model_configs/NAME.json becomes architecture NAME."""
    folder = cache_dir / CONFIGS_SUBDIR
    if folder.is_dir():
        for config in sorted(folder.glob("*.json")):
            open_clip.add_model_config(config)


def _missing_weights(open_clip: Any, spec: ClipSpec, error: Exception) -> ClipUnavailable:
    source = ""
    try:
        config = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
        hub = config.get("hf_hub") or config.get("url") or ""
        source = f" (open_clip fetches them from {hub})" if hub else ""
    except Exception:  # an unknown tag: the message below still says what was asked for
        pass
    return ClipUnavailable(
        f"the CLIP weights {spec.model} / {spec.pretrained} could not be loaded: {error}. "
        f"Fetch them on a machine with network access{source} with\n"
        f'    python -c "import open_clip; open_clip.create_model_and_transforms('
        f"'{spec.model}', pretrained='{spec.pretrained}', cache_dir='CACHE')\"\n"
        f"and copy CACHE's contents into {spec.cache_dir} (the CLIP cache folder, "
        "--clip-cache), or pass --clip-pretrained PATH to a checkpoint file."
    )


def _export_towers(open_clip: Any, spec: ClipSpec, target: Path) -> None:
    """Build the model through open_clip and write image.onnx, text.onnx and meta.json."""
    import torch

    if open_clip.get_model_config(spec.model) is None:
        raise ClipUnavailable(
            f"unknown open_clip architecture '{spec.model}'. Custom architectures are read "
            f"from {spec.cache_dir / CONFIGS_SUBDIR}/NAME.json"
        )
    if spec.pretrained and spec.checkpoint() is None:
        config = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
        if not config:
            known = ", ".join(open_clip.list_pretrained_tags_by_model(spec.model)) or "none"
            raise ClipUnavailable(
                f"'{spec.pretrained}' is neither a checkpoint file nor a pretrained tag of "
                f"{spec.model} (tags: {known})"
            )
        try:  # the weights first: their absence is told before a large model is built
            open_clip.pretrained.download_pretrained(config, cache_dir=str(spec.cache_dir))
        except Exception as error:  # offline, or the hub refused
            raise _missing_weights(open_clip, spec, error) from error
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            spec.model, pretrained=spec.pretrained or None, cache_dir=str(spec.cache_dir)
        )
    except Exception as error:  # a damaged or mismatched checkpoint
        raise _missing_weights(open_clip, spec, error) from error
    model.eval()
    preprocess = dict(model.visual.preprocess_cfg)
    size = preprocess["size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    tokenizer = open_clip.get_tokenizer(spec.model)
    context = int(getattr(tokenizer, "context_length", 77))

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

    target.mkdir(parents=True, exist_ok=True)
    towers: tuple[tuple[str, torch.nn.Module, torch.Tensor], ...] = (
        ("image", ImageTower(), torch.zeros(1, 3, *size)),
        ("text", TextTower(), tokenizer(["a face"])),
    )
    # Not under no_grad: in eval mode without autograd, torch takes fused attention kernels
    # that the ONNX exporter cannot translate.
    for name, tower, example in towers:
        partial = target / f"{name}.onnx.partial"
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
        partial.replace(target / f"{name}.onnx")
    meta = {
        "version": EXPORT_VERSION,
        "model": spec.model,
        "pretrained": spec.pretrained,
        "logit_scale": float(model.logit_scale.exp().item()),
        "context_length": context,
        "preprocess": {**preprocess, "size": list(size)},
    }
    tmp = target / f"{META_FILE}.partial"
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(target / META_FILE)  # written last: its presence means the export is whole
    log.info("exported CLIP towers to ONNX", model=spec.model, folder=str(target))


@dataclass
class _Loaded:
    image: ort.InferenceSession
    text: ort.InferenceSession
    logit_scale: float
    preprocess: Callable[[Image.Image], Any]
    tokenize: Callable[[list[str]], Any]
    providers: list[str]
    text_cache: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)


class ClipScorer:
    """Loads on first use (thread-safe); scores images against prompts."""

    def __init__(self, spec: ClipSpec, providers: Sequence[str], intra_op_threads: int = 0) -> None:
        self.spec = spec
        self.providers = list(providers)
        self.options = session_options(self.providers, intra_op_threads)
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self.unavailable = ""
        self._failed_at = -math.inf  # monotonic time of the last failed load
        self._retrying = False  # a retry runs in the background

    @property
    def loaded_providers(self) -> list[str]:
        return list(self._loaded.providers) if self._loaded else []

    def load(self) -> _Loaded:
        """The loaded model. The first use loads it (callers wait); after a failed load every
        call is answered ClipUnavailable at once, and once CLIP_RETRY_S has passed a call
        starts one retry in the background: a retry (importing torch, looking for the weights)
        can take longer than a call may wait, and no call waits for it."""
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            if self._failed_at == -math.inf:  # the first use
                try:
                    self._loaded = self._load()
                    self.unavailable = ""
                except Exception as error:
                    raise self._failed(error) from error
                return self._loaded
            if not self._retrying and time.monotonic() - self._failed_at >= settings.CLIP_RETRY_S:
                self._retrying = True
                threading.Thread(target=self._retry, name="clip-retry", daemon=True).start()
            raise ClipUnavailable(self.unavailable)

    def _retry(self) -> None:
        try:
            loaded = self._load()
        except Exception as error:
            with self._lock:
                self._failed(error)
                self._retrying = False
            return
        with self._lock:
            self._loaded, self.unavailable, self._retrying = loaded, "", False

    def _failed(self, error: Exception) -> ClipUnavailable:
        """Record a failed load (not tried again for CLIP_RETRY_S); the error to answer."""
        self._failed_at = time.monotonic()
        if isinstance(error, ClipUnavailable):
            self.unavailable = str(error)
            return error
        # Export or session creation: say so, keep serving.
        self.unavailable = f"the CLIP model could not be prepared: {error}"
        log.exception("CLIP model preparation failed", model=self.spec.model)
        return ClipUnavailable(self.unavailable)

    def _load(self) -> _Loaded:
        open_clip = _import_open_clip()
        register_configs(open_clip, self.spec.cache_dir)
        target = self.spec.export_dir()
        meta_path = target / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta.get("version") != EXPORT_VERSION:
            _export_towers(open_clip, self.spec, target)
            meta = json.loads(meta_path.read_text())
        pre = meta["preprocess"]
        preprocess = open_clip.image_transform(
            tuple(pre["size"]),
            is_train=False,
            mean=tuple(pre["mean"]),
            std=tuple(pre["std"]),
            resize_mode=pre.get("resize_mode"),
            interpolation=pre.get("interpolation"),
            fill_color=pre.get("fill_color", 0),
        )
        tokenizer = open_clip.get_tokenizer(self.spec.model)
        image = ort.InferenceSession(
            str(target / "image.onnx"), self.options, providers=self.providers
        )
        text = ort.InferenceSession(
            str(target / "text.onnx"), self.options, providers=self.providers
        )
        log.info(
            "CLIP model loaded",
            model=self.spec.model,
            pretrained=self.spec.pretrained,
            providers=providers_in_use(image),
        )
        return _Loaded(
            image=image,
            text=text,
            logit_scale=float(meta["logit_scale"]),
            preprocess=preprocess,
            tokenize=tokenizer,
            providers=providers_in_use(image),
        )

    def text_features(self, prompts: Sequence[str]) -> np.ndarray:
        """Unit text embeddings, computed once per prompt set."""
        loaded = self.load()
        key = tuple(prompts)
        with self._lock:
            cached = loaded.text_cache.get(key)
        if cached is None:
            tokens = np.asarray(loaded.tokenize(list(key)).numpy(), dtype=np.int64)
            cached = loaded.text.run(None, {"input": tokens})[0].astype(np.float32)
            with self._lock:
                loaded.text_cache[key] = cached
        return cached

    def pixels(self, image: Image.Image) -> np.ndarray:
        """open_clip's preprocessing of one image: (3, H, W) float32."""
        tensor = self.load().preprocess(image.convert("RGB"))
        return np.asarray(tensor.numpy(), dtype=np.float32)

    def score(self, pixels: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """(N, P) softmax over the prompts of the scaled cosine similarities."""
        loaded = self.load()
        text = self.text_features(prompts)
        image = loaded.image.run(None, {"input": pixels.astype(np.float32)})[0]
        logits = loaded.logit_scale * (image.astype(np.float64) @ text.T.astype(np.float64))
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities.astype(np.float32)


def build(config: settings.InferenceSettings, providers: Sequence[str]) -> ClipScorer:
    spec = ClipSpec(config.clip_model, config.clip_pretrained, config.clip_cache_dir)
    return ClipScorer(spec, providers, config.intra_op_threads)
