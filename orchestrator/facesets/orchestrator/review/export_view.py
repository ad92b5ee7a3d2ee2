"""What the review app shows, read from the export's manifests (never from a request): the
facesets of every partition, their crops and dropped faces, look-alike pairs, era buckets and
the maintenance runs. Re-read when the master manifest changes (every action rewrites it)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from facesets.contract import layout

# The report's thumbnail cache (services' settings REPORT_THUMB_SIZE / _QUALITY): the app
# finds a crop's thumbnail under the name the report gives it.
THUMB_SIZE = 128
THUMB_QUALITY = 82
PARTITION_TITLES = {
    "facesets": "Facesets",
    "masked": "Masked (mostly occluded)",
    "merged": "Merged",
    "thin_eras": "Thin eras",
}
_LISTED = "\0listed"  # the key of a faceset manifest's cached file set (never a JSON key)
REVIEW_KINDS = ("reject", "split", "name", "mark_different", "merge")


@dataclass
class Faceset:
    partition: str
    name: str
    dir: str
    label: str
    kept: int
    faces: int
    mean_quality: float
    top: list[str]
    flags: list[str]
    into: str = ""  # a merged faceset: the one it joined
    years: str = ""

    @property
    def title(self) -> str:
        return f"{self.label} ({self.name})" if self.label else self.name


@dataclass
class Crop:
    file: str  # relative to OUT
    name: str  # the file name the actions use
    rank: int
    composite: float
    in_top: bool


@dataclass
class Dropped:
    faceset: str
    file: str
    reason: str
    detail: str
    run: str


@dataclass
class Lookalike:
    names: tuple[str, str]
    distance: object  # as the manifest holds it (the page shows it)
    crops: dict[str, list[str]]  # per faceset, up to 4 crops to show


@dataclass
class HistoryItem:
    """A maintenance run as the history page lists it."""

    id: str
    kind: str
    time: str
    parameters: str  # as JSON
    counts: object
    restored: bool  # every move put back
    review: bool  # a run the app's undo puts back


# The manifests as read: JSON objects anyone who can write the export may have edited, so
# every value is checked where it is read (a damaged entry is left out, never an error).
Json = dict[str, object]


@dataclass
class Snapshot:
    key: tuple[int, int]
    manifest: Json
    facesets: list[Faceset]
    by_name: dict[str, Faceset]
    lookalikes: list[Lookalike]
    runs: list[Json]
    by_dir: dict[str, list[Faceset]] = field(default_factory=dict)
    inner: dict[str, tuple[tuple[int, int], Json]] = field(default_factory=dict)


def _int(value: object) -> int:
    if not isinstance(value, int | float | str):  # a list, an object, null (JSON)
        return 0
    try:
        return int(value)
    except (OverflowError, ValueError):  # "x", an infinite float
        return 0


def _float(value: object) -> float:
    if not isinstance(value, int | float | str):
        return 0.0
    try:
        return float(value)
    except ValueError:
        return 0.0


def _safe_rel(value: object) -> str | None:
    """A plain relative path (no `..`, not absolute), as manifests must hold."""
    return _plain_rel(value) if isinstance(value, str) else None


@lru_cache(maxsize=1 << 16)  # every snapshot checks the same thousands of crop paths again
def _plain_rel(value: str) -> str | None:
    if not value or value.startswith("/") or "\\" in value:
        return None
    parts = PurePosixPath(value).parts
    return value if parts and all(p not in ("..", ".", "") for p in parts) else None


def _pair_names(item: object) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    for key in ("facesets", "pair", "names"):
        value = item.get(key)
        if isinstance(value, list) and len(value) == 2:
            return str(value[0]), str(value[1])
    if "a" in item and "b" in item:
        return str(item["a"]), str(item["b"])
    return None


class ExportView:
    """The export folder as the app shows it; safe to share between request threads."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out).resolve()
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    # --- reading -----------------------------------------------------------------------------
    def _stat_key(self, rel: str) -> tuple[int, int]:
        try:
            info = os.lstat(self.out / rel)
        except OSError:
            return (0, 0)
        return (info.st_mtime_ns, info.st_size)

    def snapshot(self) -> Snapshot:
        key = self._stat_key(layout.EXPORT_MANIFEST)
        with self._lock:
            if self._snapshot is not None and self._snapshot.key == key:
                return self._snapshot
        manifest = layout.read_json(self.out / layout.EXPORT_MANIFEST)
        if not isinstance(manifest, dict):
            raise ValueError(f"{self.out} holds no export manifest ({layout.EXPORT_MANIFEST})")
        snap = self._build(key, manifest)
        with self._lock:
            self._snapshot = snap
        return snap

    def _build(self, key: tuple[int, int], manifest: Json) -> Snapshot:
        lookalikes = self._lookalikes(manifest)
        paired = {n for item in lookalikes for n in item.names}
        facesets: list[Faceset] = []
        for partition, value in manifest.items():
            if not isinstance(value, dict) or partition in ("gates", "candidates"):
                continue
            entries = [(n, e) for n, e in value.items() if isinstance(e, dict)]
            if not entries or not all(("dir" in e or "manifest" in e) for _, e in entries):
                continue
            for name, entry in entries:
                folder = _safe_rel(entry.get("dir") or name)
                if folder is None:
                    continue
                raw_counts = entry.get("counts")
                counts: Json = raw_counts if isinstance(raw_counts, dict) else {}
                kept = _int(counts.get("kept"))
                flags = [partition] if partition != "facesets" else []
                flags += [f for f in ("thin", "masked", "merged") if entry.get(f) is True]
                if name in paired and partition == "facesets":
                    flags.append("lookalike")
                listed = entry.get("top")
                top = [r for r in listed if _safe_rel(r)] if isinstance(listed, list) else []
                years = entry.get("years")
                facesets.append(
                    Faceset(
                        partition=partition,
                        name=str(name),
                        dir=folder,
                        # a name given here, else the Immich person export-swap named it by
                        label=str(entry.get("label") or entry.get("person") or ""),
                        kept=kept,
                        faces=_int(counts.get("faces")) or kept,
                        mean_quality=_float(entry.get("mean_quality")),
                        top=top,
                        flags=sorted(set(flags)),
                        into=str(entry.get("into") or entry.get("merged_into") or ""),
                        years="–".join(str(y) for y in years[:2])
                        if isinstance(years, list)
                        else "",
                    )
                )
        recorded = manifest.get(layout.MAINTENANCE_RUNS)
        runs = [r for r in recorded if isinstance(r, dict)] if isinstance(recorded, list) else []
        by_name: dict[str, Faceset] = {}
        for faceset in facesets:
            by_name.setdefault(faceset.name, faceset)
        by_dir: dict[str, list[Faceset]] = {}
        for faceset in facesets:
            by_dir.setdefault(faceset.dir, []).append(faceset)
        return Snapshot(key, manifest, facesets, by_name, lookalikes, runs, by_dir)

    @staticmethod
    def _lookalikes(manifest: Json) -> list[Lookalike]:
        raw = manifest.get("lookalikes")
        if isinstance(raw, dict):
            raw = raw.get("pairs") or raw.get("items") or []
        pairs = []
        for item in raw if isinstance(raw, list) else []:
            names = _pair_names(item)
            if names is None:
                continue
            crops = item.get("crops")
            pairs.append(
                Lookalike(
                    names=names,
                    distance=item.get("distance"),
                    crops={
                        str(k): [r for r in v if _safe_rel(r)][:4]
                        for k, v in (crops.items() if isinstance(crops, dict) else ())
                        if isinstance(v, list)
                    },
                )
            )
        return pairs

    def inner(self, faceset: Faceset) -> Json:
        """The faceset's own manifest (cached until it changes)."""
        rel = f"{faceset.dir}/{layout.FACESET_MANIFEST}"
        key = self._stat_key(rel)
        snap = self.snapshot()
        cached = snap.inner.get(rel)
        if cached is not None and cached[0] == key:
            return cached[1]
        inner = layout.read_json(self.out / rel)
        inner = inner if isinstance(inner, dict) else {}
        snap.inner[rel] = (key, inner)
        return inner

    def crops(self, faceset: Faceset) -> list[Crop]:
        prefix = faceset.dir + "/"
        crops = []
        for record in _list(self.inner(faceset).get("crops")):
            if not isinstance(record, dict):
                continue
            rel = _safe_rel(record.get("file"))
            if rel is None or not rel.startswith(prefix):
                continue
            crops.append(
                Crop(
                    file=rel,
                    name=PurePosixPath(rel).name,
                    rank=_int(record.get("rank")),
                    composite=_float(record.get("composite")),
                    in_top=bool(record.get("in_top", True)),
                )
            )
        return crops

    def dropped(self, faceset: Faceset) -> list[Dropped]:
        prefix = faceset.dir + "/"
        found = []
        for record in _list(self.inner(faceset).get("dropped")):
            if not isinstance(record, dict):
                continue
            rel = _safe_rel(record.get("thumbnail") or record.get("file"))
            found.append(
                Dropped(
                    faceset=faceset.name,
                    file=rel if rel and rel.startswith(prefix) else "",
                    reason=str(record.get("reason") or "dropped"),
                    detail=str(record.get("detail") or ""),
                    run=str(record.get("run") or ""),
                )
            )
        return found

    # --- images: only files a manifest lists ---------------------------------------------------
    def listed_image(self, rel: str) -> bool:
        """Whether `rel` is a crop (kept or dropped) a manifest of this export lists."""
        if _safe_rel(rel) is None or not rel.endswith(".png"):
            return False
        snap = self.snapshot()
        folder = rel.split("/" + layout.CROPS_DIR + "/", 1)[0]
        for faceset in snap.by_dir.get(folder, []):
            if rel in faceset.top or rel in self.listed(faceset):
                return True
        return False

    def listed(self, faceset: Faceset) -> frozenset[str]:
        """Every crop file (kept and dropped) the faceset's manifest lists, cached with it."""
        inner = self.inner(faceset)
        cached = inner.get(_LISTED)
        if not isinstance(cached, frozenset):
            files = [c.file for c in self.crops(faceset)]
            files += [d.file for d in self.dropped(faceset) if d.file]
            cached = inner[_LISTED] = frozenset(files)
        return cached

    def image(self, rel: str) -> tuple[bytes, str] | None:
        """The report's cached thumbnail of a listed crop (JPEG), else the crop itself (PNG);
        read without following a link."""
        if not self.listed_image(rel):
            return None
        try:
            info = os.lstat(self.out / rel)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        key = f"{rel}\0{info.st_size}\0{info.st_mtime_ns}\0{THUMB_SIZE}\0{THUMB_QUALITY}"
        name = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + ".jpg"
        thumb = self.out / layout.REPORT_DIR / layout.REPORT_THUMBS_DIR / name
        for path, kind in ((thumb, "image/jpeg"), (self.out / rel, "image/png")):
            if not path.resolve().is_relative_to(self.out):  # a folder linked elsewhere
                continue
            data = _read_plain(path)
            if data is not None:
                return data, kind
        return None

    # --- derived lists -------------------------------------------------------------------------
    def history(self) -> list[HistoryItem]:
        """The maintenance runs, newest first, with whether each is put back."""
        items = []
        for raw in reversed(self.snapshot().runs):
            moves = [m for m in _list(raw.get("moves")) if isinstance(m, dict)]
            items.append(
                HistoryItem(
                    id=str(raw.get("id")),
                    kind=str(raw.get("kind")),
                    time=str(raw.get("time", "")),
                    parameters=json.dumps(raw.get("parameters") or {}, ensure_ascii=False),
                    counts=raw.get("counts") or {},
                    restored=bool(moves) and all(m.get("restored") for m in moves),
                    review=raw.get("kind") in REVIEW_KINDS,
                )
            )
        return items

    def last_undoable(self) -> HistoryItem | None:
        for item in self.history():
            if not item.restored and item.review:
                return item
        return None


def _list(value: object) -> list[object]:
    """A list a manifest holds ([] when absent or not a list)."""
    return value if isinstance(value, list) else []


def _read_plain(path: Path) -> bytes | None:
    """A regular file's bytes, not through a link; None for anything else. The open cannot
    block (a FIFO planted under a thumbnail's name would hold the page's request forever)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.set_blocking(fd, True)
        return handle.read()
