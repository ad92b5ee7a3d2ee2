"""Make the tiny exported CLIP folder the tests score with where torch is not installed.

    .venv/bin/python scripts/make_tiny_clip.py   (needs torch and open_clip: the clip-export extra)

A randomly initialised open_clip model (tests/clip_fixtures.py, SMALL_CONFIG: the first 600
merges of open_clip's BPE vocabulary, so its token embedding stays small) is exported with
`facesets clip export` into tests/data/tiny-clip/ (about 350 KB). Beside it, open_clip's own
answers for sample images and prompts: tests/data/tiny-clip-images/*.png and
tests/data/tiny-clip-check.json (token ids and probabilities), which tests compare ClipScore
with, torch or not. Run it again only when the export format changes (clip.EXPORT_VERSION).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
FOLDER = DATA / "tiny-clip"
IMAGES = DATA / "tiny-clip-images"
CHECK = DATA / "tiny-clip-check.json"
# Prompts this random model scores alike on average, so that each image's probabilities differ.
PROMPTS = ["a dark photo", "a face with glasses", "a child", "a clear unobstructed face"]
# Text that exercises the tokenizer: case, contractions, punctuation, digits, HTML entities,
# curly quotes, ligatures, full-width forms, other scripts, emoji, truncation.
TOKEN_PROMPTS = [
    "a face wearing a medical mask",
    "A person's face, partly hidden by a HAND!",
    "I'LL WE'VE they're 'd 's — 2024 &amp; “curly” ‘quotes’ don’t",
    "ﬁne ｆｕｌｌｗｉｄｔｈ Ünïcödé façade 東京 Привет 🙂 $100.50 #tag :-)",
    "  lots   of\tspace\n\nlines ",
    "a very long prompt " * 8,
]
SIZES = [(40, 52), (64, 30), (33, 33), (20, 70), (97, 141)]  # (width, height)


def sample_images() -> list[tuple[str, Image.Image]]:
    """Smooth colour fields with noise: distinct, and different after resizing."""
    rng = np.random.default_rng(7)
    images = []
    for i, (width, height) in enumerate(SIZES):
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        base = np.stack(
            [np.sin(x / (3 + i) + c) * np.cos(y / (5 + 2 * i) - c) for c in (0.0, 1.3, 2.6)], -1
        )
        noise = rng.normal(0, 0.25, size=base.shape)
        pixels = np.clip((base + noise + 1.2) * 100, 0, 255).astype(np.uint8)
        images.append((f"sample-{i}.png", Image.fromarray(pixels)))
    return images


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from clip_fixtures import SMALL_MERGES, make_tiny_clip

    from facesets.orchestrator.cli import main as facesets

    with tempfile.TemporaryDirectory() as work:
        tiny = make_tiny_clip(Path(work), seed=0, merges=SMALL_MERGES)
        out = Path(work) / "export"
        if facesets(tiny.export_args(out)) != 0:
            return 1
        shutil.rmtree(FOLDER, ignore_errors=True)
        shutil.copytree(out, FOLDER)
        shutil.rmtree(IMAGES, ignore_errors=True)
        IMAGES.mkdir(parents=True)
        images = sample_images()
        for name, image in images:
            image.save(IMAGES / name)
        loaded = [Image.open(IMAGES / name) for name, _ in images]
        check = {
            "about": "open_clip's answers for tests/data/tiny-clip (scripts/make_tiny_clip.py)",
            "prompts": PROMPTS,
            "token_prompts": TOKEN_PROMPTS,
            "tokens": tiny.tokenizer(TOKEN_PROMPTS).numpy().tolist(),
            "images": [name for name, _ in images],
            "probabilities": tiny.probabilities(loaded, PROMPTS).astype(float).tolist(),
        }
        CHECK.write_text(json.dumps(check, indent=1) + "\n")
    size = sum(f.stat().st_size for f in FOLDER.iterdir())
    print(f"wrote {FOLDER} ({size / 1e3:.0f} KB), {IMAGES} and {CHECK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
