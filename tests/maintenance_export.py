"""A small export in the layout and manifest format of `facesets export-swap`, for the
maintenance commands' tests, and checks of the invariants they keep."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from report_export import crop_png

from facesets.contract import layout
from facesets.export.fsz import PNG_SIGNATURE, member_name, write_fsz

TOP_N = 3


def build_export(out: Path, sets: dict[int, list[tuple[str, bytes]]]) -> Path:
    """`sets`: faceset number -> (PNG file name, bytes), best first."""
    facesets: dict[str, Any] = {}
    for number, pngs in sets.items():
        name = layout.FACESET_DIR.format(number)
        set_dir = out / name
        crops = []
        for rank, (file_name, data) in enumerate(pngs, start=1):
            path = set_dir / layout.CROPS_DIR / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            crops.append({"file": f"{name}/{layout.CROPS_DIR}/{file_name}", "rank": rank})
        top = layout.FSZ_TOP.format(number, TOP_N)
        everything = layout.FSZ_ALL.format(number)
        members = [(member_name(rank, data), data) for rank, (_, data) in enumerate(pngs, 1)]
        write_fsz(set_dir / top, members[:TOP_N])
        write_fsz(set_dir / everything, members)
        counts = {"faces": len(pngs), "kept": len(pngs), "top": min(TOP_N, len(pngs))}
        manifest = {
            "faceset": name,
            "number": number,
            "params": {"top_n": TOP_N},
            "fsz_top": f"{name}/{top}",
            "fsz_all": f"{name}/{everything}",
            "counts": counts,
            "crops": crops,
            "dropped": [],
        }
        layout.atomic_write_json(set_dir / layout.FACESET_MANIFEST, manifest)
        facesets[name] = {
            "number": number,
            "dir": name,
            "manifest": f"{name}/{layout.FACESET_MANIFEST}",
            "fsz_top": manifest["fsz_top"],
            "fsz_all": manifest["fsz_all"],
            "counts": counts,
            "top": [c["file"] for c in crops[:TOP_N]],
        }
    layout.atomic_write_json(out / layout.EXPORT_MANIFEST, {"version": 1, "facesets": facesets})
    return out


def pngs(count: int, seed: int, prefix: str) -> list[tuple[str, bytes]]:
    return [(f"{prefix}{i:02d}.png", crop_png(seed * 100 + i, side=48)) for i in range(count)]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every PNG and .fsz under OUT, by path relative to OUT."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.suffix in {".png", ".fsz"}
    }


def assert_fsz_match_folders(out: Path) -> int:
    """Every .fsz is a flat zip of PNGs under neutral names (rank and a short hash); the _all
    one holds exactly its faceset's crops."""
    checked = 0
    for fsz in out.rglob("*.fsz"):
        with zipfile.ZipFile(fsz) as archive:
            names = archive.namelist()
            assert names and all("/" not in n and n.endswith(".png") for n in names), fsz
            datas = [archive.read(n) for n in names]
            assert all(d.startswith(PNG_SIGNATURE) for d in datas), fsz
            assert names == [member_name(i, d) for i, d in enumerate(datas, 1)], fsz
        crops = sorted(p.read_bytes() for p in layout.faces_dir(fsz.parent).glob("*.png"))
        if fsz.name.endswith("_all.fsz"):
            assert sorted(datas) == crops, fsz
        else:
            assert len(datas) == min(TOP_N, len(crops)) and set(datas) <= set(crops), fsz
        checked += 1
    return checked
