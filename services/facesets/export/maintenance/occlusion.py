"""`facesets occlusion EXPORT`: PNGs of faces behind masks, sunglasses or hands move aside.

Each PNG of each faceset is scored with zero-shot prompts (a scorer: ClipScore on the
inference service, or any function giving per-image prompt probabilities). A PNG whose
occlusion probability (the summed probability of the occluding prompts) reaches the threshold
moves to faces/_dropped/ and its .fsz files are rebuilt; a faceset where at least the faceset
fraction of PNGs is occluded moves whole to EXPORT/_masked/ and into the `masked` partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from facesets.common.progress import ProgressFn
from facesets.contract import layout
from facesets.contract.export import OcclusionParams
from facesets.contract.manifests import ExportManifest, FacesetManifest
from facesets.export.errors import ExportError
from facesets.export.maintenance import journal, runs
from facesets.export.maintenance.runs import KIND_FACESET, KIND_FILE, Move, Run

# (image paths, prompts) -> (N, P) probabilities, each row summing to 1
Scorer = Callable[[Sequence[Path], Sequence[str]], np.ndarray]
KIND = "occlusion"
PROVENANCE_KEY = "occlusion_filter_run"
REASON = "occluded"
MASKED_PARTITION = "masked"


@dataclass
class OcclusionOutcome:
    run: Run
    scores: dict[str, float]  # PNG (relative to OUT) -> occlusion probability
    dry_run: bool

    def summary(self) -> dict[str, object]:
        return {
            "run": self.run.id,
            "dry_run": self.dry_run,
            "counts": self.run.counts,
            "moves": [m.as_dict() for m in self.run.moves],
        }


def occlusion_filter(
    out: Path,
    params: OcclusionParams,
    scorer: Scorer,
    *,
    progress: ProgressFn | None = None,
) -> OcclusionOutcome:
    out = Path(out).absolute()
    runs.guard(out)
    manifest = runs.read_export(out)
    facesets = dict(manifest.partitions.get("facesets", {}))
    run = Run(KIND, {k: v for k, v in asdict(params).items() if k != "dry_run"})
    scores: dict[str, float] = {}
    pngs_seen = dropped = masked = 0
    occluded_columns = len(params.occluded_prompts)
    names = sorted(facesets)
    for done, name in enumerate(names, start=1):
        set_rel = runs.set_rel_of(facesets[name], name)
        rels = runs.crop_pngs(out, set_rel)
        pngs = [out / rel for rel in rels]
        if progress:
            progress("facesets", done, len(names), name)
        if not pngs:
            continue
        probabilities = np.asarray(scorer(pngs, params.prompts), dtype=np.float64)
        if probabilities.shape != (len(pngs), len(params.prompts)):
            raise ExportError(
                f"the scorer gave {probabilities.shape} scores for {len(pngs)} images and "
                f"{len(params.prompts)} prompts"
            )
        occlusion = probabilities[:, :occluded_columns].sum(axis=1)
        hits = occlusion >= params.threshold
        pngs_seen += len(pngs)
        for rel, value in zip(rels, occlusion, strict=True):
            scores[rel] = round(float(value), 6)
        fraction = float(hits.mean())
        if fraction >= params.faceset_fraction:
            masked += 1
            run.moves.append(
                Move(
                    set_rel,
                    f"{layout.MASKED_DIR}/{Path(set_rel).name}",
                    KIND_FACESET,
                    REASON,
                    f"{int(hits.sum())} of {len(pngs)} PNGs occluded",
                    MASKED_PARTITION,
                )
            )
            continue
        for rel, value, hit in zip(rels, occlusion, hits, strict=True):
            if hit:
                dropped += 1
                dst = runs.dropped_path(rel)
                run.moves.append(Move(rel, dst, KIND_FILE, REASON, f"occlusion {value:.3f}"))
    run.counts = {"facesets": len(names), "pngs": pngs_seen, "dropped": dropped, "masked": masked}
    if not params.dry_run and run.moves:
        apply_run(out, run, provenance_key=PROVENANCE_KEY)
    return OcclusionOutcome(run, scores, params.dry_run)


def apply_run(out: Path, run: Run, *, provenance_key: str) -> None:
    """Make the run's moves, rebuild the .fsz files they touch, record the run."""
    touched: set[str] = set()
    manifest = runs.read_export(out)
    recorded = runs.runs_of(manifest)
    # Recorded before anything moves: a run cut short is still known to restore.
    runs.write_manifest(
        out, runs.record_run(replace(manifest, extra=dict(manifest.extra)), recorded, run)
    )
    sets = {runs.set_of(m.src) if m.kind == KIND_FILE else m.src for m in run.moves}
    log = journal.begin(
        out,
        [layout.EXPORT_MANIFEST, *(f"{s}/{layout.FACESET_MANIFEST}" for s in sets)],
        sorted(sets),
        [journal.Rename(m.src, m.dst) for m in run.moves],
    )
    for move in run.moves:
        journal.rename(out, log, move.src, move.dst)
        if move.kind == KIND_FILE:
            set_rel = runs.set_of(move.src)
            runs.note_dropped(out, set_rel, move, run.id)
            touched.add(set_rel)
        else:
            move_entry(out, manifest, move.src, move.dst, "facesets", move.partition)
    for set_rel in sorted(touched):
        runs.rebuild_fsz(out, set_rel)
        refresh_entry(out, manifest, set_rel)
    runs.record_run(manifest, recorded, run)
    manifest.extra[provenance_key] = {k: v for k, v in run.as_dict().items() if k != "moves"}
    runs.write_manifest(out, manifest)
    journal.finish(out)


def move_entry(
    out: Path, manifest: ExportManifest, src: str, dst: str, source: str, target: str
) -> None:
    """A faceset's entry moves between partitions, its paths (and its own manifest's) follow."""
    name = Path(src).name
    entries = dict(manifest.partitions.get(source, {}))
    entry = entries.pop(name, None)
    manifest.partitions[source] = entries
    inner = runs.faceset_manifest(out, dst)
    if inner is not None:
        moved_inner = runs.reprefix(inner.to_json(), src, dst)
        runs.write_faceset_manifest(out, dst, FacesetManifest.from_json(moved_inner, dst))
    if entry is not None:
        moved = runs.reprefix(entry, src, dst) | {"dir": dst}
        together = {**manifest.partitions.get(target, {}), name: moved}
        manifest.partitions[target] = dict(sorted(together.items()))


def refresh_entry(out: Path, manifest: ExportManifest, set_rel: str) -> None:
    """The top-level entry's counts and best crops, from the faceset manifest."""
    inner = runs.faceset_manifest(out, set_rel)
    if inner is None:
        return
    for _, entries in runs.partitions(manifest):
        entry = entries.get(Path(set_rel).name)
        if entry is not None and str(entry.get("dir") or Path(set_rel).name) == set_rel:
            top_n = inner.top_n()
            entry["counts"] = inner.counts if "counts" in inner.read_keys else entry.get("counts")
            entry["top"] = [c["file"] for c in inner.crops[:top_n] if "file" in c]
            left = bool(runs.crop_pngs(out, set_rel))
            entry["fsz_top"] = inner.fsz_top if left else None
            entry["fsz_all"] = inner.fsz_all if left else None
