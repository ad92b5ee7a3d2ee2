"""Zero-shot CLIP scoring (ClipScore): an exported CLIP folder run on ONNX Runtime.

`facesets clip export MODEL TAG` (facesets.inference.clip_export, the one place that needs torch
and open_clip) writes a folder: the image and text towers as ONNX, open_clip's BPE vocabulary
and meta.json (logit scale, tokenizer and preprocessing settings). The service reads that folder
and scores with ONNX Runtime, numpy and Pillow alone (facesets.inference.clip_prep), with the
same provider policy and session options as the face models, so DirectML, CUDA and CPU all work
from one code path. The folder can be made on any machine with torch and copied.

Nothing here loads unless ClipScore is used: without an exported folder the service runs and
ClipScore answers FAILED_PRECONDITION with the command that makes one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import structlog
from PIL import Image

from facesets.common import settings
from facesets.inference.clip_folder import (  # noqa: F401  # the folder's names, here too
    CONFIGS_SUBDIR,
    EXPORT_EXTRA_HINT,
    EXPORT_VERSION,
    IMAGE_FILE,
    META_FILE,
    ONNX_SUBDIR,
    TEXT_FILE,
    VOCAB_FILE,
    ClipMeta,
    ClipSpec,
    ClipUnavailable,
    export_command,
    folder_name,
    missing_folder_message,
    read_meta,
    spec_of,
)
from facesets.inference.clip_prep import BpeTokenizer, Preprocess
from facesets.inference.session import providers_in_use, session_options

log = structlog.get_logger(__name__)


@dataclass
class _Loaded:
    folder: Path
    meta: ClipMeta
    image: ort.InferenceSession
    text: ort.InferenceSession
    logit_scale: float
    preprocess: Preprocess
    tokenize: BpeTokenizer
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

    @property
    def loaded_meta(self) -> ClipMeta | None:
        return self._loaded.meta if self._loaded else None

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
            if (
                not self._retrying
                and time.monotonic() - self._failed_at >= settings.inference().clip.retry_s
            ):
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
        # A damaged folder or session creation: say so, keep serving.
        folder = self.spec.export_dir()
        self.unavailable = f"the CLIP model in {folder} could not be loaded: {error}"
        log.exception("CLIP model load failed", folder=str(folder))
        return ClipUnavailable(self.unavailable)

    def _load(self) -> _Loaded:
        folder = self.spec.export_dir()
        if not (folder / META_FILE).is_file():
            raise ClipUnavailable(missing_folder_message(self.spec))
        meta = read_meta(folder)
        preprocess = Preprocess.from_meta(meta.preprocess)
        tokenizer = BpeTokenizer.from_meta(folder, meta.tokenizer)
        image = ort.InferenceSession(
            str(folder / IMAGE_FILE), self.options, providers=self.providers
        )
        text = ort.InferenceSession(str(folder / TEXT_FILE), self.options, providers=self.providers)
        log.info(
            "CLIP model loaded",
            folder=str(folder),
            model=meta.model,
            pretrained=meta.pretrained,
            providers=providers_in_use(image),
        )
        return _Loaded(
            folder=folder,
            meta=meta,
            image=image,
            text=text,
            logit_scale=meta.logit_scale,
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
            tokens = loaded.tokenize(list(key))
            cached = loaded.text.run(None, {"input": tokens})[0].astype(np.float32)
            with self._lock:
                loaded.text_cache[key] = cached
        return cached

    def pixels(self, image: Image.Image) -> np.ndarray:
        """open_clip's preprocessing of one image: (3, H, W) float32."""
        return self.load().preprocess(image)

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
    return ClipScorer(spec_of(config), providers, config.runtime.intra_op_threads)
