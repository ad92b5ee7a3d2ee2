"""An exported CLIP folder: its layout, where it is looked for, and what to do when it is not
there. Imports nothing heavy (no ONNX Runtime), so `facesets doctor` can use it anywhere."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesets.common import settings

EXPORT_EXTRA_HINT = (
    "pip install 'facesets[clip-export]' with the torch build for that machine; the CPU build: "
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
)
CONFIGS_SUBDIR = "model_configs"  # custom architectures: open_clip JSON configs, by name
ONNX_SUBDIR = "onnx"
META_FILE = "meta.json"
IMAGE_FILE = "image.onnx"
TEXT_FILE = "text.onnx"
VOCAB_FILE = "bpe_vocab.txt.gz"
EXPORT_VERSION = 2  # bump when the folder's layout or the exported graphs change


class ClipUnavailable(Exception):
    """ClipScore cannot run here; the message says what to make or fetch, and where."""


def folder_name(model: str, pretrained: str) -> str:
    """The default folder of an export under CACHE/onnx/ (a checkpoint file is keyed by its
    content, so another file of the same name gets another folder)."""
    path = Path(pretrained).expanduser()
    if pretrained and path.is_file():
        tag = f"file-{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    else:
        tag = pretrained or "random"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model}--{tag}")


def export_command(model: str, pretrained: str, out: Path | None = None) -> str:
    out_flag = f" --out {out}" if out is not None else ""
    return f"facesets clip export {model} {pretrained}{out_flag}"


@dataclass(frozen=True)
class ClipSpec:
    model: str  # open_clip architecture name the folder is expected to hold
    pretrained: str  # open_clip pretrained tag or checkpoint file it was exported from
    cache_dir: Path
    folder: Path | None = None  # an exported folder named outright (--clip-dir)

    def export_dir(self) -> Path:
        """The exported folder this spec reads."""
        if self.folder is not None:
            return self.folder
        return self.cache_dir / ONNX_SUBDIR / folder_name(self.model, self.pretrained)


def missing_folder_message(spec: ClipSpec) -> str:
    folder = spec.export_dir()
    return (
        f"no exported CLIP model in {folder} (no {META_FILE} there). Make it once on any "
        f"machine with torch and open_clip ({EXPORT_EXTRA_HINT}) with\n"
        f"    {export_command(spec.model, spec.pretrained, folder)}\n"
        "then copy that folder here; or point the inference service at an exported folder "
        "with --clip-dir DIR (FACESETS_CLIP_DIR; `facesets occlusion --clip-dir DIR` for the "
        "service it starts itself)"
    )


def read_meta(folder: Path) -> dict[str, Any]:
    """meta.json of an exported folder; ClipUnavailable when it is missing or another version."""
    path = folder / META_FILE
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ClipUnavailable(f"no {META_FILE} in {folder}") from error
    except (OSError, ValueError) as error:
        raise ClipUnavailable(f"{path} cannot be read: {error}") from error
    if meta.get("version") != EXPORT_VERSION:
        raise ClipUnavailable(
            f"{folder} was exported by another facesets version (export format "
            f"{meta.get('version')}, this one reads {EXPORT_VERSION}); export it again with "
            f"{export_command(meta.get('model', 'MODEL'), meta.get('pretrained', 'TAG'), folder)}"
        )
    return meta


def spec_of(config: settings.InferenceSettings) -> ClipSpec:
    return ClipSpec(
        config.clip.model, config.clip.pretrained, config.clip_cache_dir, config.clip.dir
    )
