"""`facesets dedup-optimize EXPORT`: fewer, cleaner PNGs per faceset.

(a) byte-identical PNGs across facesets (sha256): the first (faceset name, then rank) stays;
(b) the multi-face audit: every PNG is re-detected (CountFaces) and any with a face count other
    than 1 is dropped, since roop-unleashed averages every face it finds in every PNG;
(c) within a faceset, near-duplicates (embedding cosine similarity at or above the threshold)
    collapse to the better-quality one (the crop record's composite score, then its rank).
Dropped PNGs move to faces/_dropped/, .fsz files are rebuilt, the run is recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesets.common.beneath import Beneath
from facesets.common.progress import ProgressFn
from facesets.contract.export import DedupOptimizeParams
from facesets.contract.manifests import ExportManifest, as_float, as_int
from facesets.export.maintenance import runs
from facesets.export.maintenance.occlusion import apply_run
from facesets.export.maintenance.runs import KIND_FILE, Move, Run

# PNG paths -> face count of each
CountFaces = Callable[[Sequence[Path]], list[int]]
# PNG paths -> (N, D) unit embeddings of each PNG's face
EmbedFaces = Callable[[Sequence[Path]], np.ndarray]
KIND = "dedup"
REASON_COPY = "byte_copy"
REASON_FACES = "face_count"
REASON_NEAR = "near_duplicate"


@dataclass
class _Png:
    path: Path
    rel: str
    faceset: str
    rank: int
    composite: float

    def quality(self) -> tuple[float, int, str]:
        """Sort key, best first."""
        return (-self.composite, self.rank, self.rel)


def _pngs_of(out: Path, manifest: ExportManifest) -> list[_Png]:
    found: list[_Png] = []
    for name, entry in sorted(manifest.partitions.get("facesets", {}).items()):
        set_rel = runs.set_rel_of(entry, name)
        inner = runs.faceset_manifest(out, set_rel)
        records = {Path(str(c.get("file", ""))).name: c for c in (inner.crops if inner else [])}
        for rel in runs.crop_pngs(out, set_rel):
            record = records.get(Path(rel).name, {})
            found.append(
                _Png(
                    out / rel,
                    rel,
                    set_rel,
                    as_int(record.get("rank"), 1 << 30),
                    as_float(record.get("composite"), 0.0),
                )
            )
    return found


def _drop(png: _Png, reason: str, detail: str) -> Move:
    return Move(png.rel, runs.dropped_path(png.rel), KIND_FILE, reason, detail)


def dedup_optimize(
    out: Path,
    params: DedupOptimizeParams,
    count_faces: CountFaces,
    embed: EmbedFaces,
    *,
    progress: ProgressFn | None = None,
) -> Run:
    out = Path(out).absolute()
    runs.guard(out)
    manifest = runs.read_export(out)
    pngs = _pngs_of(out, manifest)
    disk = Beneath(out)
    run = Run(KIND, {"near_duplicate_similarity": params.near_duplicate_similarity})

    # (a) byte copies across facesets
    first: dict[str, _Png] = {}
    left: list[_Png] = []
    for png in sorted(pngs, key=lambda p: (p.faceset, p.rank, p.rel)):
        digest = hashlib.sha256(disk.read_bytes(png.rel)).hexdigest()
        if digest in first and first[digest].faceset != png.faceset:
            run.moves.append(_drop(png, REASON_COPY, f"same bytes as {first[digest].rel}"))
        else:
            first.setdefault(digest, png)
            left.append(png)
    if progress:
        progress("byte copies", 1, 3)

    # (b) the multi-face audit
    counts = count_faces([p.path for p in left]) if left else []
    single: list[_Png] = []
    for png, count in zip(left, counts, strict=True):
        if count != 1:
            run.moves.append(_drop(png, REASON_FACES, f"{count} faces found"))
        else:
            single.append(png)
    if progress:
        progress("face count", 2, 3)

    # (c) near-duplicates within each faceset
    embeddings = embed([p.path for p in single]) if single else np.zeros((0, 1), np.float32)
    by_set: dict[str, list[int]] = {}
    for index, png in enumerate(single):
        by_set.setdefault(png.faceset, []).append(index)
    near = 0
    for indices in by_set.values():
        kept: list[int] = []
        for index in sorted(indices, key=lambda i: single[i].quality()):
            if kept:
                similarity = embeddings[kept] @ embeddings[index]
                best = int(np.argmax(similarity))
                if float(similarity[best]) >= params.near_duplicate_similarity:
                    detail = f"cosine {float(similarity[best]):.3f} to {single[kept[best]].rel}"
                    run.moves.append(_drop(single[index], REASON_NEAR, detail))
                    near += 1
                    continue
            kept.append(index)
    if progress:
        progress("near duplicates", 3, 3)

    copies = sum(1 for m in run.moves if m.reason == REASON_COPY)
    faces = sum(1 for m in run.moves if m.reason == REASON_FACES)
    run.counts = {"pngs": len(pngs), "byte_copies": copies, "face_count": faces, "near": near}
    if not params.dry_run and run.moves:
        apply_run(out, run, provenance_key="dedup_run")
        _append_provenance(out, run, copies, near, faces)
    return run


def summary(run: Run, dry_run: bool) -> dict[str, object]:
    return {
        "run": run.id,
        "dry_run": dry_run,
        "counts": run.counts,
        "moves": [m.as_dict() for m in run.moves],
    }


def _append_provenance(out: Path, run: Run, copies: int, near: int, faces: int) -> None:
    manifest = runs.read_export(out)
    block = {k: v for k, v in run.as_dict().items() if k != "moves"}
    manifest.extra.pop("dedup_run", None)
    dedup = {**block, "counts": {"byte_copies": copies, "near": near}}
    multiface = {**block, "counts": {"face_count": faces}}
    manifest.extra["dedup_runs"] = [*manifest.runs("dedup_runs"), dedup]
    manifest.extra["multiface_runs"] = [*manifest.runs("multiface_runs"), multiface]
    runs.write_manifest(out, manifest)
