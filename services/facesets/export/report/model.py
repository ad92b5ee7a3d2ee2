"""What the review report shows, read from the export's manifests and nothing else.

The top-level manifest keeps its facesets in partitions (`facesets`, era buckets, `thin_eras`,
`masked`, `merged`, ...), each a mapping of name → entry (or a list of entries with a `name`)
shaped like an export-swap faceset entry: `manifest`, `counts`, `mean_quality`, `sources`,
`fsz_top`, `fsz_all` (a merged one also `into`: the faceset it joined). Known partitions get
a title and a flag from `PARTITIONS`; any other top-level mapping whose entries look like
faceset entries is shown under its own key, so a partition added later appears without a
change here. Beside them: `candidates`, a look-alike
review list (`lookalikes`) and an explanation of an empty or thin result (`explanation`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from facesets.common import settings
from facesets.common.beneath import Beneath, SymlinkRefusedError, is_relative
from facesets.contract import layout
from facesets.contract.manifests import check_version

log = structlog.get_logger(__name__)


class ReportError(ValueError):
    """The folder holds no export to report on."""


@dataclass(frozen=True)
class PartitionKind:
    """A partition the report knows by name: the manifest keys that hold it, its title and
    the flag each of its entries carries."""

    key: str
    title: str
    flag: str | None = None
    aliases: tuple[str, ...] = ()


PARTITIONS: tuple[PartitionKind, ...] = (
    PartitionKind("facesets", "Facesets"),
    PartitionKind("eras", "Era buckets", "era", ("era_buckets",)),
    PartitionKind("thin_eras", "Thin era buckets", "thin", ("thin",)),
    PartitionKind("masked", "Masked", "masked"),
    PartitionKind("merged", "Merged", "merged"),
)
CANDIDATES_KEY = "candidates"
LOOKALIKES_KEYS = ("lookalikes", "look_alikes", "lookalike_pairs")
EXPLANATION_KEYS = ("explanation", "why_empty")
FLAG_LOOKALIKE = "look-alike"
FLAG_THIN = "thin"
# Flags offered by the overview's filter, in this order; others found in the data follow.
FLAGS = ("thin", "masked", "merged", FLAG_LOOKALIKE, "era", "candidates", "unreadable")
BOOLEAN_FLAGS = ("thin", "masked", "merged")  # an entry may carry these as `"thin": true`
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


@dataclass(frozen=True)
class Crop:
    file: str  # relative to OUT
    rank: int
    in_top: bool
    composite: float
    title: str


@dataclass(frozen=True)
class Dropped:
    reason: str
    detail: str
    face_id: Any
    source: str
    thumbnail: str | None  # relative to OUT
    title: str


@dataclass(frozen=True)
class Candidate:
    file: str
    nearest: str
    distance: float
    title: str


@dataclass
class LookalikePair:
    names: tuple[str, str]
    distance: float | None
    shared_photos: int | None
    crops: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Entry:
    """One faceset (or era bucket, or quarantined set) with everything its row and page show."""

    partition: str
    name: str
    kept: int
    faces: int
    top: int
    recropped: int
    mean_quality: float
    sources: list[str]
    flags: list[str]
    crops: list[Crop]
    dropped: list[Dropped]
    dropped_counts: dict[str, int]
    fsz: list[str]
    skipped: list[dict[str, object]]  # unreadable sources as the manifest lists them
    page: str  # relative to OUT/report
    into: str | None = None  # a merged faceset: the one it joined
    years: str | None = None  # an era bucket: the capture years it spans
    small_px: float | None = None  # the face size (short edge, pixels) the "small" gate kept
    label: str = ""  # a person's name given in `facesets review` (or the export's label)

    @property
    def top_crops(self) -> list[Crop]:
        return [c for c in self.crops if c.in_top]


@dataclass
class Partition:
    key: str
    title: str
    entries: list[Entry]


@dataclass
class ReportModel:
    out: Path
    partitions: list[Partition]
    candidates: list[Candidate] | None  # None: the export made no candidates section
    lookalikes: list[LookalikePair] | None
    explanation: Any
    gates: Mapping[str, Any] | None = None  # faces each gate removed (facesets.contract.gates)
    thin_below: int = (
        settings.export().report.thin_crops
    )  # the "thin" flag: fewer kept crops than this
    immich: list[dict[str, object]] | None = None  # disagreements with the user's Immich people

    def entries(self) -> Iterator[Entry]:
        for partition in self.partitions:
            yield from partition.entries

    def entry_named(self, name: str) -> Entry | None:
        return next((e for e in self.entries() if e.name == name), None)

    def image_files(self) -> list[str]:
        """Every image the report shows, relative to OUT, each once."""
        files: dict[str, None] = {}
        for entry in self.entries():
            files.update((c.file, None) for c in entry.crops)
            files.update((d.thumbnail, None) for d in entry.dropped if d.thumbnail)
        for candidate in self.candidates or []:
            files[candidate.file] = None
        for pair in self.lookalikes or []:
            for rels in pair.crops.values():
                files.update((rel, None) for rel in rels)
        return list(files)


# --- reading ----------------------------------------------------------------------------------


def read_manifest(out: Path, rel: str) -> dict[str, Any]:
    """A manifest inside OUT as a dict; {} (and a warning) when it is missing or unreadable.
    No symbolic link is followed on the way (a SymlinkRefusedError says where one lies)."""
    try:
        payload = Beneath(out).read_json(rel, default={})
    except SymlinkRefusedError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning("report.manifest_unreadable", path=str(out / rel), error=str(exc))
        return {}
    return payload if isinstance(payload, dict) else {}


def _read_top(out: Path) -> dict[str, object]:
    """The export's manifest.json; {} when there is none. One that is damaged (not JSON, not an
    object, a newer schema) is a ReportError naming it: it is not a missing export."""
    path = out / layout.EXPORT_MANIFEST
    try:
        payload = Beneath(out).read_json(layout.EXPORT_MANIFEST, default={})
        return check_version(payload, str(path))
    except SymlinkRefusedError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:  # ManifestError and JSONDecodeError too
        raise ReportError(f"{path} is not a readable export manifest ({exc})") from exc


def _inside(rel: Any) -> str | None:
    """`rel` when it is a plain path inside OUT: a manifest names nothing beyond the export."""
    return rel if is_relative(rel) else None


def _number(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def scores_title(item: Mapping[str, Any], lead: str = "") -> str:
    """A crop's tooltip: what is known of it, nothing for what is not."""
    scores = item.get("scores") or {}
    parts = (
        [f"{k} {_number(v):.2f}" for k, v in sorted(scores.items())]
        if isinstance(scores, Mapping)
        else []
    )
    face_id = item.get("face_id")
    shown = [
        lead,
        f"face {face_id}" if face_id is not None else "",
        str(item.get("source") or ""),
        ", ".join(parts),
    ]
    return " · ".join(part for part in shown if part)


def _years(key: str, entry: Mapping[str, Any]) -> str | None:
    """The capture years of an era bucket: its `years` (first and last), else the label
    `age split` gave it (export-swap keeps it as the entry's `label`)."""
    years = entry.get("years")
    if isinstance(years, Mapping) and years.get("first") is not None:
        first, last = years.get("first"), years.get("last")
        return str(first) if last in (None, first) else f"{first}-{last}"
    era = {k for kind in PARTITIONS[1:3] for k in (kind.key, *kind.aliases)}  # era buckets
    label = entry.get("label")
    return str(label) if key in era and label else None


def thin_threshold(kept: Sequence[int]) -> int:
    """Fewer kept crops than this flag a faceset thin: a fraction of the export's median
    faceset, within [REPORT_THIN_MIN_CROPS, REPORT_THIN_CROPS]."""
    if not kept:
        return settings.export().report.thin_crops
    relative = math.ceil(settings.export().report.thin_fraction * float(np.median(kept)))
    return min(
        settings.export().report.thin_crops, max(settings.export().report.thin_min_crops, relative)
    )


def page_name(partition: str, name: str) -> str:
    """The entry's page, relative to OUT/report: a plain file name whatever the entry's name."""
    slug = name if _SAFE_NAME.fullmatch(name) else ""
    if not slug:
        cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "set"
        slug = f"{cleaned}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:10]}"
    part = partition if _SAFE_NAME.fullmatch(partition) else "partition"
    return f"{layout.REPORT_PAGES_DIR}/{part}/{slug}.html"


def _entries_of(value: Any) -> list[tuple[str, Mapping[str, Any]]] | None:
    """(name, entry) pairs of a partition, or None when the value is not one."""
    pairs: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(value, Mapping):
        for name, entry in value.items():
            if not isinstance(entry, Mapping):
                return None
            pairs.append((str(entry.get("name") or name), entry))
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for entry in value:
            if not isinstance(entry, Mapping):
                return None
            name = entry.get("name") or entry.get("faceset") or entry.get("dir")
            if not name:
                return None
            pairs.append((str(name), entry))
    else:
        return None
    return pairs


def _looks_like_entries(pairs: list[tuple[str, Mapping[str, Any]]]) -> bool:
    return bool(pairs) and all(
        any(k in entry for k in ("manifest", "counts", "fsz_all", "crops")) for _, entry in pairs
    )


def _crops(entry: Mapping[str, Any], detail: Mapping[str, Any]) -> list[Crop]:
    raw = detail.get("crops")
    if isinstance(raw, list) and raw:
        crops = [
            Crop(
                file=str(c["file"]),
                rank=int(_number(c.get("rank"), i)),
                in_top=bool(c.get("in_top")),
                composite=_number(c.get("composite")),
                title=scores_title(c),
            )
            for i, c in enumerate(raw, 1)
            if isinstance(c, Mapping) and isinstance(c.get("file"), str)
        ]
        return sorted(crops, key=lambda c: c.rank)
    # No per-faceset manifest: the list of best crops in the top-level entry is all there is.
    return [
        Crop(file=rel, rank=i, in_top=True, composite=0.0, title=rel)
        for i, rel in enumerate(entry.get("top") or [], 1)
        if isinstance(rel, str)
    ]


def _dropped(detail: Mapping[str, Any]) -> list[Dropped]:
    items = detail.get("dropped")
    return [
        Dropped(
            reason=str(d.get("reason", "")),
            detail=str(d.get("detail", "")),
            face_id=d.get("face_id"),
            source=str(d.get("source", "")),
            thumbnail=d["thumbnail"] if isinstance(d.get("thumbnail"), str) else None,
            title=scores_title(d, str(d.get("detail") or "")),
        )
        for d in (items if isinstance(items, list) else [])
        if isinstance(d, Mapping)
    ]


def _flags(kind: PartitionKind | None, entry: Mapping[str, Any], kept: int) -> set[str]:
    flags: set[str] = set()
    if kind and kind.flag:
        flags.add(kind.flag)
    listed = entry.get("flags")
    if isinstance(listed, list):
        flags.update(str(f) for f in listed if isinstance(f, str) and f)
    flags.update(f for f in BOOLEAN_FLAGS if entry.get(f) is True)
    if entry.get("merged_into") or entry.get("merged_from"):
        flags.add("merged")
    if entry.get("skipped"):
        flags.add("unreadable")
    return flags


def manifest_rel(name: str, entry: Mapping[str, Any]) -> str | None:
    """The faceset manifest an entry of the master manifest points at (inside OUT), if any."""
    return _inside(entry.get("manifest") or f"{entry.get('dir') or name}/{layout.FACESET_MANIFEST}")


def read_entry(
    out: Path, kind: PartitionKind | None, key: str, name: str, entry: Mapping[str, Any]
) -> Entry:
    """One entry of partition `key`, with its faceset manifest read whole."""
    manifest_path = manifest_rel(name, entry)
    detail = read_manifest(out, manifest_path) if manifest_path else {}
    counts = entry.get("counts") or detail.get("counts") or {}
    counts = counts if isinstance(counts, Mapping) else {}
    crops = _crops(entry, detail)
    kept = int(_number(counts.get("kept"), len(crops)))
    dropped = _dropped(detail)
    dropped_counts = counts.get("dropped") if isinstance(counts.get("dropped"), Mapping) else {}
    if dropped:  # the header counts what the page lists (a maintenance run adds to the list)
        dropped_counts = dict(Counter(d.reason or "dropped" for d in dropped))
    sources = entry.get("sources") or detail.get("sources") or []
    params = detail.get("params") if isinstance(detail.get("params"), Mapping) else {}
    small = params.get("min_face_short") if params else None
    skipped = entry.get("skipped") or []
    return Entry(
        partition=key,
        name=name,
        kept=kept,
        faces=int(_number(counts.get("faces"), kept)),
        top=int(_number(counts.get("top"), sum(1 for c in crops if c.in_top))),
        recropped=int(_number(counts.get("recropped"))),
        mean_quality=_number(entry.get("mean_quality", detail.get("mean_quality"))),
        sources=[str(s) for s in sources] if isinstance(sources, list) else [],
        flags=sorted(_flags(kind, entry, kept)),
        crops=crops,
        dropped=dropped,
        dropped_counts={str(k): int(_number(v)) for k, v in sorted((dropped_counts or {}).items())},
        fsz=[
            str(rel)
            for rel in (
                entry.get("fsz_top", detail.get("fsz_top")),
                entry.get("fsz_all", detail.get("fsz_all")),
            )
            if isinstance(rel, str) and rel
        ],
        skipped=[dict(s) for s in skipped if isinstance(s, Mapping)]
        if isinstance(skipped, list)
        else [],
        page=page_name(key, name),
        into=str(into) if (into := entry.get("into") or entry.get("merged_into")) else None,
        years=_years(key, entry),
        small_px=_number(small) if isinstance(small, int | float) else None,
        label=str(entry.get("label") or detail.get("label") or ""),
    )


def _candidates(section: Any) -> list[Candidate] | None:
    if not isinstance(section, Mapping):
        return None
    items = section.get("items")
    return [
        Candidate(
            file=item["file"],
            nearest=str(item.get("nearest", "")),
            distance=_number(item.get("distance")),
            title=scores_title(item),
        )
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, Mapping) and isinstance(item.get("file"), str)
    ]


def _pair_names(item: Mapping[str, Any]) -> tuple[str, str] | None:
    for key in ("facesets", "pair", "names"):
        value = item.get(key)
        if isinstance(value, list | tuple) and len(value) == 2:
            return str(value[0]), str(value[1])
    if "a" in item and "b" in item:
        return str(item["a"]), str(item["b"])
    return None


def _lookalikes(top: Mapping[str, Any]) -> list[LookalikePair] | None:
    raw: Any = None
    for key in LOOKALIKES_KEYS:
        if key in top:
            raw = top[key]
            break
    else:
        return None
    if isinstance(raw, Mapping):
        raw = raw.get("pairs") or raw.get("items") or []
    pairs: list[LookalikePair] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping) or (names := _pair_names(item)) is None:
            continue
        shared = item.get("shared_photos")
        crops = item.get("crops") if isinstance(item.get("crops"), Mapping) else {}
        pairs.append(
            LookalikePair(
                names=names,
                distance=_number(item["distance"]) if "distance" in item else None,
                shared_photos=len(shared)
                if isinstance(shared, list)
                else int(_number(shared))
                if shared is not None
                else None,
                crops={
                    str(k): [r for r in v if isinstance(r, str)]
                    for k, v in (crops or {}).items()
                    if isinstance(v, list)
                },
            )
        )
    return pairs


EntryReader = Callable[[Path, PartitionKind | None, str, str, Mapping[str, Any]], Entry]


def read_model(out: Path, entry_of: EntryReader = read_entry) -> ReportModel:
    """The report's content for the export in `out`; ReportError when there is no export.
    `entry_of`: how an entry is read (a refresh reuses the rows it cached)."""
    out = Path(out).absolute()
    top = _read_top(out)
    known = {k: kind for kind in PARTITIONS for k in (kind.key, *kind.aliases)}
    explanation = next((top[k] for k in EXPLANATION_KEYS if top.get(k)), None)
    partitions: list[Partition] = []
    for key, value in top.items():
        kind = known.get(key)
        pairs = _entries_of(value)
        if pairs is None or (kind is None and not _looks_like_entries(pairs)):
            continue
        title = kind.title if kind else key.replace("_", " ").strip().capitalize()
        entries = [entry_of(out, kind, key, name, entry) for name, entry in pairs]
        entries.sort(key=lambda e: e.name)
        partitions.append(Partition(key, title, entries))
    order = {k: i for i, kind in enumerate(PARTITIONS) for k in (kind.key, *kind.aliases)}
    partitions.sort(key=lambda p: (order.get(p.key, len(order)), p.key))
    candidates = _candidates(top.get(CANDIDATES_KEY))
    lookalikes = _lookalikes(top)
    if "facesets" not in top and not partitions and candidates is None and explanation is None:
        raise ReportError(f"no export manifest with facesets in {out}")
    gates = top.get("gates")
    model = ReportModel(
        out,
        partitions,
        candidates,
        lookalikes,
        explanation,
        gates if isinstance(gates, Mapping) else None,
    )
    immich = top.get("immich_disagreements")
    if isinstance(immich, list):
        model.immich = [dict(item) for item in immich if isinstance(item, Mapping)]
    plain = [e.kept for p in partitions if p.key == "facesets" for e in p.entries]
    model.thin_below = thin_threshold(plain or [e.kept for e in model.entries()])
    for entry in model.entries():
        if entry.kept < model.thin_below and FLAG_THIN not in entry.flags:
            entry.flags = sorted({*entry.flags, FLAG_THIN})
    _add_derived_flags(model)
    return model


def _add_derived_flags(model: ReportModel) -> None:
    """Flags that come from other sections: a look-alike pair, candidates waiting nearby."""
    paired = {name for pair in model.lookalikes or [] for name in pair.names}
    nearby = {c.nearest for c in model.candidates or []}
    for entry in model.entries():
        extra = {FLAG_LOOKALIKE} if entry.name in paired else set()
        if entry.name in nearby:
            extra.add("candidates")
        if extra:
            entry.flags = sorted(set(entry.flags) | extra)
