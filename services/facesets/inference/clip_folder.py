"""An exported CLIP folder: its layout, its typed meta.json, where it is looked for, and what
to do when it is not there. Imports nothing heavy (no ONNX Runtime), so `facesets doctor` can
use it anywhere.

meta.json is read as any file found on disk: every value is checked (sizes and scales
positive, the token ids and context length integers), the vocabulary is a file of the folder
named by its bare name, and the folder's three files are plain files, not links. A folder that
fails is refused with the file, the key at fault and the command that exports it again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

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


class PreprocessMeta(BaseModel):
    """open_clip's eval transform, as the export recorded it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    size: tuple[int, int] = Field(description="(height, width)")
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Literal["bicubic", "bilinear", "random"] = "bicubic"
    resize_mode: Literal["shortest", "longest", "squash"] = "shortest"
    fill_color: int = Field(default=0, ge=0, le=255)

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value: object) -> object:
        return (value, value) if isinstance(value, int) else value

    @field_validator("size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1 or max(value) > 4096:
            raise ValueError(f"{value} is not an image size (1 to 4096 pixels a side)")
        return value

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _per_channel(cls, value: object) -> object:
        # open_clip writes one number for all three channels, or three
        return (value,) * 3 if isinstance(value, int | float) else value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError("a standard deviation must be positive")
        return value

    @field_validator("interpolation", "resize_mode", mode="before")
    @classmethod
    def _default_when_empty(cls, value: object, info: ValidationInfo) -> object:
        # open_clip leaves these None for its defaults
        if value is None or value == "":
            return "bicubic" if info.field_name == "interpolation" else "shortest"
        return value


class TokenizerMeta(BaseModel):
    """open_clip's CLIP BPE tokenizer, as the export recorded it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["clip-bpe"] = "clip-bpe"
    vocab: str  # the merges file, by its name in the folder
    merges: int | None = Field(default=None, ge=0)
    context_length: int = Field(ge=2, le=4096)
    clean: Literal["lower", "whitespace", "canonicalize"] = "lower"
    special_tokens: tuple[str, ...] | None = Field(default=None, min_length=2)
    sot: int = Field(ge=0)
    eot: int = Field(ge=0)

    @field_validator("vocab")
    @classmethod
    def _a_file_of_the_folder(cls, value: str) -> str:
        if not value or value in (".", "..") or "/" in value or "\\" in value:
            raise ValueError(f"{value!r} is not a file name in the export's folder")
        return value


class ClipMeta(BaseModel):
    """meta.json of an exported CLIP folder. Keys this version does not know are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    version: int
    model: str
    pretrained: str
    logit_scale: float = Field(gt=0, le=1e4, allow_inf_nan=False)
    preprocess: PreprocessMeta
    tokenizer: TokenizerMeta
    exported_with: dict[str, str] = Field(default_factory=dict)
    checked: dict[str, float] = Field(default_factory=dict)

    def files(self) -> tuple[str, ...]:
        """The folder's files the model runs from."""
        return (IMAGE_FILE, TEXT_FILE, self.tokenizer.vocab)


def read_meta(folder: Path) -> ClipMeta:
    """meta.json of an exported folder, checked, with the files it names; ClipUnavailable when
    it is missing, another version, or not what an export writes."""
    path = folder / META_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ClipUnavailable(f"no {META_FILE} in {folder}") from error
    except (OSError, ValueError) as error:
        raise ClipUnavailable(f"{path} cannot be read: {error}") from error
    if not isinstance(raw, dict):
        raise ClipUnavailable(f"{path} is not a JSON object")
    again = export_command(
        str(raw.get("model", "MODEL")), str(raw.get("pretrained", "TAG")), folder
    )
    if raw.get("version") != EXPORT_VERSION:
        raise ClipUnavailable(
            f"{folder} was exported by another facesets version (export format "
            f"{raw.get('version')}, this one reads {EXPORT_VERSION}); export it again with "
            f"{again}"
        )
    try:
        meta = ClipMeta.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ClipUnavailable(
            f"{path} is not what an export writes ({where}: {first['msg']}); export it again "
            f"with {again}"
        ) from error
    for name in meta.files():
        file = folder / name
        if file.is_symlink() or not file.is_file():
            what = "a link" if file.is_symlink() else "missing"
            raise ClipUnavailable(
                f"{file} is {what}: an export's files are plain files in its folder; export it "
                f"again with {again}"
            )
    return meta


def spec_of(config: settings.InferenceSettings) -> ClipSpec:
    return ClipSpec(
        config.clip.model, config.clip.pretrained, config.clip_cache_dir, config.clip.dir
    )
