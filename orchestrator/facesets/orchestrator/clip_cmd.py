"""`facesets clip export MODEL TAG [--out DIR]`: make the folder ClipScore runs from.

The one command that needs torch and open_clip (the `clip-export` extra); the folder it writes
runs on ONNX Runtime, numpy and Pillow alone and can be copied to the inference machine."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from facesets.orchestrator.settings import SETTINGS


def _model_root(args: argparse.Namespace) -> Path:
    root = args.model_root or SETTINGS.model_root
    return Path(root).expanduser()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="clip_action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="export an open_clip model to ONNX towers, its tokenizer vocabulary and meta.json",
        description="Build an open_clip model (architecture + pretrained tag, or a checkpoint "
        "file) and write the folder the inference service scores with: image.onnx, text.onnx, "
        "the BPE vocabulary and meta.json (preprocessing, tokenizer, logit scale). Needs torch "
        "and open_clip; the folder does not, and can be copied to another machine.",
    )
    export.add_argument("model", metavar="MODEL", help="open_clip architecture, e.g. ViT-L-14")
    export.add_argument(
        "pretrained",
        metavar="TAG",
        help="open_clip pretrained tag (e.g. dfn2b_s39b) or a checkpoint file",
    )
    export.add_argument(
        "--out",
        type=Path,
        help="the folder to write (default MODEL_ROOT/clip/onnx/MODEL--TAG, where the inference "
        "service looks by default)",
    )
    export.add_argument(
        "--cache",
        type=Path,
        help="folder of downloaded weights and custom architectures (model_configs/NAME.json); "
        "FACESETS_CLIP_CACHE, default MODEL_ROOT/clip",
    )
    export.add_argument("--model-root", help="FACESETS_MODEL_ROOT (for the defaults above)")


def run(args: argparse.Namespace) -> int:
    # The export runs the inference service's own code (the services distribution).
    from facesets.common import settings
    from facesets.inference import clip, clip_export

    cache = args.cache or (
        Path(os.environ["FACESETS_CLIP_CACHE"])
        if os.environ.get("FACESETS_CLIP_CACHE")
        else _model_root(args) / settings.inference().clip.cache_subdir
    )
    cache = cache.expanduser()
    out = args.out or cache / clip.ONNX_SUBDIR / clip.folder_name(args.model, args.pretrained)
    out = out.expanduser().resolve()
    request = clip_export.ExportRequest(args.model, args.pretrained, cache, out)
    clip_export.remove_partials(out)
    try:
        meta = clip_export.export(request)
    except clip.ClipUnavailable as error:
        raise RuntimeError(str(error)) from error
    size = clip_export.folder_size(out)
    checked = meta.checked
    print(
        f"exported {meta.model} / {meta.pretrained} to {out} ({size / 1e6:.1f} MB): "
        f"checked against open_clip (pixels within {checked['pixels']:.2g}, features within "
        f"{max(checked['image_features'], checked['text_features']):.2g}).\n"
        "Copy the folder to the inference machine and start the service with "
        f"--clip-dir {out} (FACESETS_CLIP_DIR), or put it at "
        f"MODEL_ROOT/{settings.inference().clip.cache_subdir}/{clip.ONNX_SUBDIR}/"
        f"{clip.folder_name(args.model, args.pretrained)} there (where it looks by default)."
    )
    return 0


COMMANDS = {
    "clip": (
        "CLIP models for ClipScore (`occlusion`): `clip export MODEL TAG` makes the folder the "
        "inference service scores with (needs torch; the folder does not)",
        add_arguments,
        run,
    )
}
