"""CLIP's text tokenizer and image preprocessing in plain Python, numpy and Pillow.

Both follow open_clip step by step, so an exported folder (facesets.inference.clip_export) runs
without torch: the BPE tokenizer reads the merges open_clip's SimpleTokenizer used (saved
beside the towers, gzipped like open_clip's own file) and reproduces its token ids; the
preprocessing reads open_clip's eval settings from meta.json (size, mean/std, resize mode,
interpolation, fill) and makes the same PIL resize and crop, then scales and normalises in
float32 as torchvision does.

Text cleaning uses ftfy where it is installed, as open_clip does. Without it, the fixes ftfy
makes on ordinary text are made here (HTML entities, curly quotes, Latin ligatures, full-width
forms, control characters, NFC); only mojibake repair (text decoded in the wrong encoding) is
left out.
"""

from __future__ import annotations

import gzip
import html
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from facesets.inference.clip_folder import PreprocessMeta, TokenizerMeta

BPE_HEADER = "#version: 0.2"
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")  # open_clip's order
MAX_MERGES = 49152 - 256 - 2  # open_clip reads at most this many merge lines


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte-to-character table (printable characters stand for bytes)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    bs += range(ord("®"), ord("ÿ") + 1)
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def read_merges(path: Path) -> list[tuple[str, str]]:
    """The merge rules of a BPE vocabulary file in open_clip's format (gzipped or not)."""
    data = path.read_bytes()
    text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8")
    lines = text.split("\n")[1 : MAX_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    return [(m[0], m[1]) for m in merges if len(m) == 2]


def write_merges(merges: Sequence[tuple[str, str]], path: Path) -> None:
    """open_clip's format, gzipped with no timestamp (the same merges give the same bytes)."""
    text = "\n".join([BPE_HEADER, *(f"{a} {b}" for a, b in merges)]) + "\n"
    path.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))


# ftfy's fixes for ordinary text (ftfy.chardata): used when ftfy is not installed.
_LIGATURES = {
    ord(k): v
    for k, v in {
        "Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž",
        "ǆ": "dž", "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj", "ﬀ": "ff",
        "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st",
    }.items()
}  # fmt: skip
_WIDTH = {0x3000: " "} | {
    i: unicodedata.normalize("NFKC", chr(i))
    for i in range(0xFF01, 0xFFF0)
    if unicodedata.normalize("NFKC", chr(i)) != chr(i)
}
_CONTROL: dict[int, None] = dict.fromkeys(
    [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF]
    + [*range(0xFFF9, 0xFFFD)]
)
_ANSI = re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")
_SINGLE_QUOTE = re.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTE = re.compile("[\u201c-\u201f]")
_C1 = re.compile(r"[\x80-\x9f]")


def _c1(match: re.Match[str]) -> str:
    try:
        return match.group().encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:  # bytes cp1252 leaves undefined stand for themselves
        return match.group()


def _fix_segment(text: str) -> str:
    unescape = "<" not in text
    while True:
        before = text
        if unescape:
            text = html.unescape(text)
        text = _C1.sub(_c1, text)
        text = text.translate(_LIGATURES).translate(_WIDTH)
        text = _SINGLE_QUOTE.sub("'", _DOUBLE_QUOTE.sub('"', text))
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = _ANSI.sub("", text).translate(_CONTROL)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text


def _fallback_fix_text(text: str) -> str:
    return "".join(_fix_segment(line) for line in text.splitlines(keepends=True))


def text_fixer() -> Callable[[str], str]:
    """ftfy.fix_text where ftfy is installed, else its fixes for ordinary text (line by line)."""
    try:
        import ftfy
    except ImportError:
        return _fallback_fix_text
    return cast(Callable[[str], str], ftfy.fix_text)


def _whitespace_clean(text: str) -> str:
    return " ".join(text.split()).strip()


def _canonicalize(text: str) -> str:
    text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation)).lower()
    return " ".join(text.split()).strip()


CLEANERS: dict[str, Callable[[str], str]] = {
    "lower": lambda text: _whitespace_clean(text).lower(),
    "whitespace": _whitespace_clean,
    "canonicalize": _canonicalize,
}  # open_clip's clean functions, after its basic clean (fix_text, HTML entities, strip)


def _is_letter(char: str) -> bool:
    return unicodedata.category(char)[0] == "L"


def _is_number(char: str) -> bool:
    return unicodedata.category(char)[0] == "N"


def _is_space(char: str) -> bool:
    """What the pattern skips: Unicode White_Space, as `regex` has it (str.isspace less the
    separators U+1C..U+1F), and U+0345, which case-insensitive `regex` matches nowhere."""
    return (char.isspace() and not "\x1c" <= char <= "\x1f") or char == "\u0345"


def _same(text: str, at: int, literal: str) -> bool:
    """`literal` at `at`, character by character up to case (as the `regex` module folds)."""
    part = text[at : at + len(literal)]
    return len(part) == len(literal) and all(
        a == b or a.casefold() == b.casefold() for a, b in zip(part, literal, strict=True)
    )


def split_words(text: str, specials: Sequence[str] = SPECIAL_TOKENS) -> list[str]:
    """open_clip's pre-tokenizing pattern, case-insensitive, without the `regex` module:
    special tokens | 's 't 're 've 'm 'll 'd | letters+ | one digit | other non-space run."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        match = next((s for s in specials if _same(text, i, s)), None)
        match = match or next((c for c in CONTRACTIONS if _same(text, i, c)), None)
        if match:
            j = i + len(match)
        elif _is_letter(char):
            j = i + 1
            while j < n and _is_letter(text[j]):
                j += 1
        elif _is_number(char):
            j = i + 1
        elif _is_space(char):
            i += 1
            continue
        else:
            j = i + 1
            while j < n and not (_is_space(text[j]) or _is_letter(text[j]) or _is_number(text[j])):
                j += 1
        words.append(text[i:j])
        i = j
    return words


class BpeTokenizer:
    """open_clip's SimpleTokenizer (CLIP BPE): the same ids, as an int64 (N, context) array."""

    def __init__(
        self,
        merges: Sequence[tuple[str, str]],
        context_length: int,
        clean: str = "lower",
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
    ) -> None:
        if clean not in CLEANERS:
            raise ValueError(f"unknown text cleaning '{clean}' (known: {', '.join(CLEANERS)})")
        self.byte_encoder = bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(merge) for merge in merges]
        vocab += list(special_tokens)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.specials = tuple(special_tokens)
        self.sot = self.encoder[special_tokens[0]]
        self.eot = self.encoder[special_tokens[1]]
        self.context_length = context_length
        self.fix_text = text_fixer()  # looked up once: ftfy where installed
        self.clean_step = CLEANERS[clean]
        self.cache: dict[str, list[str]] = {t: [t] for t in special_tokens}

    @classmethod
    def from_meta(cls, folder: Path, spec: TokenizerMeta) -> BpeTokenizer:
        """The tokenizer of an exported folder (its meta.json checked by read_meta)."""
        tokenizer = cls(
            read_merges(folder / spec.vocab),
            spec.context_length,
            spec.clean,
            spec.special_tokens or SPECIAL_TOKENS,
        )
        if (tokenizer.sot, tokenizer.eot) != (spec.sot, spec.eot):
            raise ValueError(
                f"{folder / spec.vocab} gives start/end token ids "
                f"{tokenizer.sot}/{tokenizer.eot}, meta.json says {spec.sot}/{spec.eot}"
            )
        return tokenizer

    def bpe(self, word: str) -> list[str]:
        cached = self.cache.get(word)
        if cached is not None:
            return cached
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:], strict=False)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, len(self.ranks)))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        basic = html.unescape(html.unescape(self.fix_text(text))).strip()
        for word in split_words(self.clean_step(basic), self.specials):
            encoded = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.bpe(encoded))
        return ids

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        result = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = [self.sot, *self.encode(text), self.eot]
            if len(tokens) > self.context_length:  # truncated, still ending in the end token
                tokens = tokens[: self.context_length]
                tokens[-1] = self.eot
            result[row, : len(tokens)] = tokens
        return result


_INTERPOLATION = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class Preprocess:
    """open_clip's eval transform (image_transform, is_train=False) on a PIL image."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    fill_color: int = 0

    @classmethod
    def from_meta(cls, meta: PreprocessMeta) -> Preprocess:
        """The transform an exported folder recorded (its meta.json checked by read_meta)."""
        return cls(
            meta.size,
            meta.mean,
            meta.std,
            meta.resize_mode,
            meta.interpolation,
            meta.fill_color,
        )

    def _resize(
        self, image: Image.Image, height: int, width: int, interpolation: str = ""
    ) -> Image.Image:
        if image.size == (width, height):  # torchvision returns the image untouched
            return image
        # "random" is a training option; open_clip's eval transform takes bicubic for it
        method = _INTERPOLATION.get(interpolation or self.interpolation, Image.Resampling.BICUBIC)
        return image.resize((width, height), method)

    @staticmethod
    def _keep_ratio(image: Image.Image, target: tuple[int, int], longest: float) -> tuple[int, int]:
        """timm's ResizeKeepRatio size (longest=0: the shortest edge fits)."""
        h, w = image.size[1], image.size[0]
        ratio_h, ratio_w = h / target[0], w / target[1]
        ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
        return round(h / ratio), round(w / ratio)

    @staticmethod
    def _crop(image: Image.Image, height: int, width: int, fill: int) -> Image.Image:
        """torchvision's center_crop (fill 0) / open_clip's center_crop_or_pad (fill given)."""
        w, h = image.size
        if width > w or height > h:
            left, top = max(width - w, 0) // 2, max(height - h, 0) // 2
            right, bottom = max(width - w + 1, 0) // 2, max(height - h + 1, 0) // 2
            padded = Image.new(image.mode, (w + left + right, h + top + bottom), (fill,) * 3)
            padded.paste(image, (left, top))
            image = padded
            w, h = image.size
            if (w, h) == (width, height):
                return image
        top = int(round((h - height) / 2.0))
        left = int(round((w - width) / 2.0))
        return image.crop((left, top, left + width, top + height))

    def resized(self, image: Image.Image) -> Image.Image:
        """The RGB image the tower sees, before scaling to [0, 1] and normalising."""
        image = image.convert("RGB")
        height, width = self.size
        if self.resize_mode == "longest":
            height_1, width_1 = self._keep_ratio(image, self.size, 1.0)
            image = self._resize(image, height_1, width_1)
            return self._crop(image, height, width, self.fill_color)
        if self.resize_mode == "squash":
            return self._resize(image, height, width)
        if height == width:  # torchvision's Resize(int): the shorter edge to `height`
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(height * long / short)
            new_w, new_h = (height, new_long) if w <= h else (new_long, height)
            image = self._resize(image, new_h, new_w)
        else:  # open_clip's ResizeKeepRatio here is bicubic whatever the setting
            height_0, width_0 = self._keep_ratio(image, self.size, 0.0)
            image = self._resize(image, height_0, width_0, "bicubic")
        return self._crop(image, height, width, 0)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """(3, H, W) float32, as ToTensor then Normalize compute it."""
        pixels = np.asarray(self.resized(image), dtype=np.uint8).astype(np.float32)
        pixels = pixels.transpose(2, 0, 1) / np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)
