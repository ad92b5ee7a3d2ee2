"""A synthetic export at library scale for the report's tests: small drawn crops written in the
layout and manifest format of `facesets export-swap`, spread over every partition the report
knows, with candidates and look-alike pairs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesets.contract import layout
from facesets.export.fsz import write_fsz

CROP_SIDE = 320
REASONS = ("outlier", "small", "duplicate", "unreadable")


def crop_png(seed: int, side: int = CROP_SIDE) -> bytes:
    """A face-like drawing: a gradient, an oval, two eyes; different for every seed."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    ramp = np.linspace(0.6, 1.2, side, dtype=np.float32)[:, None, None]
    image = np.clip(np.ones((side, side, 3), np.float32) * base * ramp, 0, 255).astype(np.uint8)
    centre = (side // 2 + int(rng.integers(-20, 20)), side // 2)
    skin = tuple(int(v) for v in rng.integers(120, 240, size=3))
    cv2.ellipse(image, centre, (side // 4, side // 3), 0, 0, 360, skin, -1)
    for dx in (-side // 10, side // 10):
        cv2.circle(image, (centre[0] + dx, centre[1] - side // 12), side // 30, (30, 30, 30), -1)
    # Some texture, as photos have: coarse blocks, so the PNG stays a few tens of kB.
    blocks = rng.integers(0, 24, size=(side // 8, side // 8, 3), dtype=np.uint8)
    noise = cv2.resize(blocks, (side, side), interpolation=cv2.INTER_NEAREST)
    ok, data = cv2.imencode(".png", cv2.add(image, noise))
    assert ok
    return data.tobytes()


@dataclass
class LibraryExport:
    out: Path
    partitions: dict[str, list[str]]  # partition key → entry names
    kept: dict[str, int]  # entry name → kept crops
    dropped: dict[str, list[str]]  # entry name → reasons of its dropped faces
    sources: dict[str, list[str]]  # entry name → source folders
    candidates: int = 0
    lookalikes: list[tuple[str, str]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for names in self.partitions.values() for name in names]


def _write_entry(
    out: Path,
    folder: str,
    name: str,
    number: int,
    sources: list[str],
    kept: int,
    reasons: list[str],
    pngs: list[bytes],
    rng: random.Random,
    top_n: int,
) -> dict[str, Any]:
    set_dir = out / folder
    crops: list[dict[str, Any]] = []
    members: list[tuple[str, bytes]] = []
    for rank in range(1, kept + 1):
        source = f"{sources[rank % len(sources)]}/IMG_{number:03d}_{rank:03d}.jpg"
        file_name = f"{layout.flattened_name(source)}_f{number * 1000 + rank}.png"
        data = pngs[(number * 7 + rank) % len(pngs)]
        (set_dir / layout.CROPS_DIR).mkdir(parents=True, exist_ok=True)
        (set_dir / layout.CROPS_DIR / file_name).write_bytes(data)
        members.append((file_name, data))
        composite = round(0.95 - rank * 0.02 - rng.random() * 0.1, 6)
        crops.append(
            {
                "face_id": number * 1000 + rank,
                "source": source,
                "file": f"{folder}/{layout.CROPS_DIR}/{file_name}",
                "rank": rank,
                "in_top": rank <= top_n,
                "composite": composite,
                "scores": {"det_score": 0.8, "frontality": 0.7},
                "recropped": False,
            }
        )
    dropped: list[dict[str, Any]] = []
    for i, reason in enumerate(reasons):
        face_id = number * 1000 + 900 + i
        record: dict[str, Any] = {
            "face_id": face_id,
            "source": f"{sources[0]}/DROP_{number:03d}_{i}.jpg",
            "reason": reason,
            "detail": f"synthetic {reason}",
            "scores": {"det_score": 0.5},
        }
        if reason != "unreadable":
            rel = f"{folder}/{layout.REJECTED_DIR}/drop_{face_id}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(pngs[(number + i) % len(pngs)])
            record["thumbnail"] = rel
        dropped.append(record)
    fsz_top = f"{folder}/{layout.FSZ_TOP.format(number, top_n)}"
    fsz_all = f"{folder}/{layout.FSZ_ALL.format(number)}"
    write_fsz(out / fsz_top, members[:top_n])
    write_fsz(out / fsz_all, members[: top_n + 2])  # the bundle's content is not under test
    counts = {
        "faces": kept + len(reasons),
        "kept": kept,
        "top": min(kept, top_n),
        "recropped": 0,
        "dropped": {r: reasons.count(r) for r in sorted(set(reasons))},
    }
    mean = round(sum(c["composite"] for c in crops) / kept, 6)
    manifest_rel = f"{folder}/{layout.FACESET_MANIFEST}"
    layout.atomic_write_json(
        out / manifest_rel,
        {
            "version": 1,
            "faceset": name,
            "number": number,
            "fsz_top": fsz_top,
            "fsz_all": fsz_all,
            "counts": counts,
            "mean_quality": mean,
            "sources": sources,
            "crops": crops,
            "dropped": dropped,
        },
    )
    return {
        "number": number,
        "dir": folder,
        "manifest": manifest_rel,
        "fsz_top": fsz_top,
        "fsz_all": fsz_all,
        "counts": counts,
        "mean_quality": mean,
        "sources": sources,
        "top": [c["file"] for c in crops[:top_n]],
        "skipped": [],
    }


def build_library_export(
    out: Path,
    facesets: int = 300,
    eras: int = 12,
    thin_eras: int = 8,
    masked: int = 4,
    merged: int = 3,
    candidates: int = 150,
    seed: int = 7,
    top_n: int = 6,
) -> LibraryExport:
    """An export of `facesets` facesets plus era buckets, thin eras, masked and merged sets."""
    rng = random.Random(seed)
    pngs = [crop_png(seed * 100 + i) for i in range(24)]
    plan = [
        ("facesets", facesets, ""),
        ("eras", eras, "_eras/"),
        ("thin_eras", thin_eras, "_thin/"),
        ("masked", masked, "_masked/"),
        ("merged", merged, "_merged/"),
    ]
    library = LibraryExport(out, {}, {}, {}, {})
    top: dict[str, Any] = {"version": 1}
    number = 0
    for key, count, prefix in plan:
        section: dict[str, Any] = {}
        library.partitions[key] = []
        for _ in range(count):
            number += 1
            name = f"faceset_{number:03d}" if key != "eras" else f"faceset_{number:03d}_era"
            sources = [
                f"/photos/library/{rng.choice(['Family', 'Trips', 'Phone'])}/person {number:03d}"
                + (f" part {j}" if j else "")
                for j in range(rng.randint(1, 5))
            ]
            if number == 137:
                sources.append("/photos/library/Trips/Lisbon 2013 (Ana & Rui)")
            kept = 4 if key == "thin_eras" else rng.randint(3, 12)
            reasons = [rng.choice(REASONS) for _ in range(rng.randint(0, 3))]
            entry = _write_entry(
                out, prefix + name, name, number, sources, kept, reasons, pngs, rng, top_n
            )
            if key == "merged":
                entry["merged_into"] = "faceset_001"
            section[name] = entry
            library.partitions[key].append(name)
            library.kept[name] = kept
            library.dropped[name] = reasons
            library.sources[name] = sources
        top[key] = section
    items = []
    for i in range(candidates):
        nearest = f"faceset_{1 + i % facesets:03d}"
        rel = f"{layout.CANDIDATES_DIR}/{nearest}__cand_{i}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(pngs[i % len(pngs)])
        items.append(
            {
                "face_id": 900000 + i,
                "source": f"/photos/library/Unsorted/c{i}.jpg",
                "nearest": nearest,
                "distance": round(0.3 + (i % 20) / 100, 6),
                "composite": 0.6,
                "scores": {"det_score": 0.7},
                "file": rel,
            }
        )
    top["candidates"] = {"considered": candidates * 2, "items": items, "dropped": [], "files": []}
    library.candidates = candidates
    library.lookalikes = [("faceset_010", "faceset_011"), ("faceset_020", "faceset_200")]
    top["lookalikes"] = [
        {"facesets": list(pair), "distance": 0.41, "shared_photos": 1}
        for pair in library.lookalikes
    ]
    layout.atomic_write_json(out / layout.EXPORT_MANIFEST, top)
    return library
