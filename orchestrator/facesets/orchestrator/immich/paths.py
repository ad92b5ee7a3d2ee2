"""Where an Immich asset goes under a staging folder: library-relative, safe paths, exclusions."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from facesets.contract import layout

PARTIAL_DIR = ".partial"  # downloads in progress, renamed into place when complete
USER_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_UNSAFE_CHARS = re.compile(r'[\x00-\x1f<>:"|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_RESERVED_TOP = {layout.IMMICH_STATE.casefold(), layout.IMMICH_QUEUE.casefold(), PARTIAL_DIR}
_MAX_PART_BYTES = 200


def library_relative_path(original_path: str, labels: Iterable[str] = ()) -> PurePosixPath:
    """The part of an Immich originalPath below its library root, made safe to join under a
    staging folder (relative, no `..`, no characters Windows refuses).

    In order: after `library/<label>/` for a known label (the user's storage label or id);
    after `library/<any>/`; after the last `upload/` (dropping a leading user id); else, for an
    external library, the whole path without its root.
    """
    parts = [p for p in original_path.replace("\\", "/").split("/") if p not in ("", ".")]
    if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):
        parts = parts[1:]
    known = {label for label in labels if label}
    rest = parts
    for i, part in enumerate(parts[:-2]):
        if part == "library" and parts[i + 1] in known:
            rest = parts[i + 2 :]
            break
    else:
        if "library" in parts[:-2]:
            i = parts.index("library")
            rest = parts[i + 2 :]
        elif "upload" in parts[:-1]:
            i = len(parts) - 1 - parts[::-1].index("upload")
            rest = parts[i + 1 :]
            if len(rest) > 1 and rest[0] in known:
                rest = rest[1:]
    safe = [_safe_part(p) for p in rest]
    if safe and safe[0].casefold() in _RESERVED_TOP:
        safe[0] = "_" + safe[0]
    return PurePosixPath(*safe) if safe else PurePosixPath("_")


def _safe_part(part: str) -> str:
    # A lone surrogate (a name a server decoded with escapes) cannot be written as UTF-8, which
    # every path facesets sends or stores is: it becomes "?", then "_" below.
    part = part.encode("utf-8", "replace").decode("utf-8")
    part = _UNSAFE_CHARS.sub("_", part).strip().rstrip(". ")
    if part in ("", ".", ".."):
        return "_"
    if _WINDOWS_RESERVED.match(part):
        part = "_" + part
    if len(part.encode("utf-8")) > _MAX_PART_BYTES:
        stem, dot, suffix = part.rpartition(".")
        keep = suffix if dot and len(suffix) <= 16 else ""
        head = (stem if keep else part).encode("utf-8")[: _MAX_PART_BYTES - len(keep) - 1]
        part = head.decode("utf-8", "ignore") + ("." + keep if keep else "")
    return part


def is_excluded(relative: PurePosixPath, original_path: str, globs: Sequence[str]) -> bool:
    """Case-insensitive fnmatch against the library-relative path and the full originalPath;
    `*` crosses folders, so `*/@eaDir/*` matches at any depth."""
    candidates = (
        "/" + relative.as_posix().casefold(),
        original_path.replace("\\", "/").casefold(),
    )
    return any(fnmatch.fnmatchcase(c, glob.casefold()) for glob in globs for c in candidates)
