"""`consolidate`: merge facesets of one identity that `refine` left apart; reversible.

Faceset centroids (from the store's embeddings of their faces) are compared pairwise: pairs at
cosine similarity >= candidate_similarity are reported, groups whose every pair reaches
confident_similarity are merged (complete linkage, so a chain A~B~C of distinct people does not
collapse into one). In a group the faceset with the lowest number is the target: it gains the
others' faces and photos, and the others' folders move to _merged/. refine_manifest.json is
rewritten to match, and consolidate_manifest.json keeps, per round, the refine manifest as it
was and every file and folder touched, so that `undo` puts back exactly the state before.

A re-run with the same inputs changes nothing: each round remembers the refine manifest it
produced; while that is still current the plan is recomputed from the state before the round,
and only a different plan (other thresholds) replaces it. Once refine or extend has rewritten
the refine manifest, that round can no longer be undone (it would drop their changes); a new
consolidation then stacks a round on top.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import structlog

from facesets.clustering import linkage
from facesets.clustering.different_people import apart, marked_groups
from facesets.clustering.jobs.context import ClusteringJob, JobContext, Writes
from facesets.clustering.jobs.job import (
    JobError,
    JobOutcome,
    Photos,
    ProgressFn,
    centroid_of,
    check_made_from,
    face_index_by_id,
    report,
    unusable_manifest,
    vector_json,
)
from facesets.clustering.jobs.materialize import (
    APPLYING,
    DONE,
    add_file,
    check_link_mode,
    encode_json,
    inside_or_fail,
    matches,
    place,
    revert_round,
    roll_back_consolidation,
    save_consolidation,
    write_json_if_changed,
)
from facesets.clustering.store import FaceStore, FaceTable
from facesets.common.roots import Roots
from facesets.contract import layout
from facesets.contract.clustering import ConsolidateParams
from facesets.contract.manifests import (
    Candidate,
    ConsolidateRound,
    ConsolidateState,
    ManifestError,
    Merge,
    ParamValue,
    RefineManifest,
)
from facesets.v1 import clustering_pb2

log = structlog.get_logger(__name__)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Plan:
    merges: list[Merge]
    candidates: list[Candidate]


def _plan(
    base: RefineManifest,
    table: FaceTable,
    candidate_similarity: float,
    confident_similarity: float,
    different: Sequence[tuple[list[int], list[int]]] = (),
) -> _Plan:
    """Which facesets merge into which, and the candidate pairs, from one refine manifest.
    `different`: face-id groups marked as two people (`facesets review`), never merged."""
    assert table.embedding is not None
    facesets = base.entries()
    row_of = face_index_by_id(table)
    unknown = {f for e in facesets for f in e.face_ids} - set(row_of)
    if unknown:
        raise JobError(
            f"the refine manifest lists {len(unknown)} faces the store does not hold; "
            "was it made from another store?"
        )
    dim = table.embedding.shape[1]
    centroids = np.array(
        [centroid_of(table.embedding[[row_of[f] for f in e.face_ids]]) for e in facesets],
        dtype=np.float32,
    ).reshape(len(facesets), dim)
    similarity = centroids @ centroids.T
    names = [e.name for e in facesets]
    numbers = [e.number for e in facesets]
    groups = (
        [sorted(g) for g in linkage.complete_linkage_groups(centroids, confident_similarity)]
        if len(facesets) > 1
        else []
    )
    groups = apart(groups, [set(e.face_ids) for e in facesets], different)
    merges = []
    merged_pairs: set[tuple[int, int]] = set()
    for group in groups:
        if len(group) < 2:
            continue
        group.sort(key=lambda i: numbers[i])
        pair_sims = [float(similarity[i, j]) for i in group for j in group if i < j]
        merged_pairs.update((min(i, j), max(i, j)) for i in group for j in group if i != j)
        merges.append(
            Merge(names[group[0]], [names[i] for i in group[1:]], round(min(pair_sims), 4))
        )
    merges.sort(key=lambda m: numbers[names.index(m.target)])
    candidates = [
        Candidate(names[i], names[j], round(float(similarity[i, j]), 4), (i, j) in merged_pairs)
        for i in range(len(facesets))
        for j in range(i + 1, len(facesets))
        if similarity[i, j] >= candidate_similarity
    ]
    candidates.sort(key=lambda c: (-c.similarity, c.a, c.b))
    return _Plan(merges, candidates)


def _parse_refine(text: str, where: Path) -> RefineManifest:
    """The refine manifest a round starts from (the file, or the copy a round recorded)."""
    try:
        return RefineManifest.from_json(json.loads(text), str(where))
    except (ManifestError, json.JSONDecodeError) as exc:
        raise JobError(f"{where} is not a readable refine manifest ({exc}); re-run refine") from exc


def _free_name(merged_root: Path, name: str, taken: set[str]) -> str:
    """A folder name under _merged/ that neither exists nor is promised to another source."""
    candidate, k = name, 2
    while (merged_root / candidate).exists() or candidate in taken:
        candidate, k = f"{name}-{k}", k + 1
    taken.add(candidate)
    return f"{layout.MERGED_DIR}/{candidate}"


class _Folder:
    """One refine output folder with its two manifests."""

    def __init__(self, root: Path, store: FaceStore) -> None:
        self.root = root
        self.refine_path = root / layout.REFINE_MANIFEST
        self.path = root / layout.CONSOLIDATE_MANIFEST
        if not self.refine_path.is_file():
            raise JobError(f"no {layout.REFINE_MANIFEST} in {root}; run `refine` into it first")
        self.store = store
        try:
            self.state = ConsolidateState.read(self.path) or ConsolidateState()
        except ManifestError as exc:
            raise unusable_manifest(exc) from exc

    def refine_bytes(self) -> bytes:
        return self.refine_path.read_bytes()

    def save_state(self) -> None:
        save_consolidation(self.root, self.state)

    # --- reverting ----------------------------------------------------------------------------
    def revert_top(self) -> ConsolidateRound:
        """Undo the last round (also one stopped half-way) and forget it."""
        top = self.state.rounds[-1]
        if top.status == DONE and _sha(self.refine_bytes()) != top.refine_after_sha256:
            raise JobError(
                f"{self.refine_path} changed after the last consolidation (refine or extend ran "
                "since); undoing it would lose those changes. Re-run refine instead."
            )
        revert_round(self.root, top)
        self.state.rounds.pop()
        self.save_state()
        return top

    # --- applying -----------------------------------------------------------------------------
    def apply(
        self,
        plan: _Plan,
        parameters: dict[str, ParamValue],
        base_text: str,
        table: FaceTable,
        photos: Photos,
        link_mode: str,
        progress: ProgressFn | None,
    ) -> list[str]:
        """Carry out a plan on the folder as base_text describes it; returns foreign conflicts."""
        base = _parse_refine(base_text, self.refine_path)
        entries = {e.name: replace(e) for e in base.entries()}
        merged_root = self.root / layout.MERGED_DIR
        merges: list[Merge] = []
        sources_of: dict[str, str] = {}  # added file -> its source photo
        conflicts: list[str] = []
        taken: set[str] = set()
        for merge in plan.merges:
            target = entries[merge.target]
            own: dict[str, str] = {}
            for sha in target.photos or []:
                for path in photos.existing.get(sha, []):
                    add_file(own, target.name, path)
            gained: dict[str, str] = {}
            for name in merge.sources:
                for sha in entries[name].photos or []:
                    for path in photos.existing.get(sha, []):
                        add_file(gained, target.name, path)
            added: dict[str, str] = {}
            for relpath, source in gained.items():
                destination = inside_or_fail(self.root, relpath)
                if relpath in own:
                    continue
                if destination.exists() or destination.is_symlink():
                    # Not written by this round, so never removed by its undo either.
                    if not matches(Path(source), destination, link_mode):
                        conflicts.append(relpath)
                    continue
                added[relpath] = source
            sources_of.update(added)
            moved = {
                name: _free_name(merged_root, name, taken)
                for name in merge.sources
                if (self.root / name).exists()
            }
            merges.append(replace(merge, added_files=sorted(added), moved=moved))

        record = ConsolidateRound(APPLYING, parameters, base_text, merges, plan.candidates)
        self.state.rounds.append(record)
        # a crash from here on can be reverted
        write_json_if_changed(self.path, self.state.to_json())

        written = set(base.written or [])
        row_of = face_index_by_id(table)
        assert table.embedding is not None
        total = sum(len(m.added_files) for m in merges)
        done = 0
        for merge in merges:
            target = entries[merge.target]
            sources = [entries[name] for name in merge.sources]
            if merge.moved:
                merged_root.mkdir(exist_ok=True)
            for name, aside in merge.moved.items():
                os.replace(inside_or_fail(self.root, name), inside_or_fail(self.root, aside))
            for relpath in merge.added_files:
                place(Path(sources_of[relpath]), self.root / relpath, link_mode)
                done += 1
                report(progress, "consolidate", done, total)
            face_ids = sorted({f for e in (target, *sources) for f in e.face_ids})
            target.face_ids = face_ids
            target.photos = sorted({table.sha256[row_of[f]] for f in face_ids})
            target.centroid = vector_json(
                centroid_of(table.embedding[[row_of[f] for f in face_ids]])
            )
            before = target.extra.get("merged_from")
            merged_from = [str(n) for n in before] if isinstance(before, list) else []
            target.extra = target.extra | {"merged_from": sorted([*merged_from, *merge.sources])}
            written = {p for p in written if p.split("/", 1)[0] not in merge.sources}
            written |= set(merge.added_files)

        gone = {name for merge in merges for name in merge.sources}
        after = replace(
            base,
            facesets=[entries[e.name] for e in base.entries() if e.name not in gone],
            written=sorted(written),
        ).to_json()
        write_json_if_changed(self.refine_path, after)
        record.status, record.refine_after_sha256 = DONE, _sha(encode_json(after))
        write_json_if_changed(self.path, self.state.to_json())
        return conflicts


def consolidate(
    facesets_dir: Path,
    store: FaceStore,
    params: ConsolidateParams | None = None,
    *,
    progress: ProgressFn | None = None,
    roots: Roots | None = None,
) -> JobOutcome:
    """Merge duplicate identities among the facesets of a refine output, or undo the last merge."""
    params = params or ConsolidateParams()
    candidate_similarity = params.candidate_similarity
    confident_similarity = params.confident_similarity
    undo, dry_run = params.undo, params.dry_run
    link_mode = params.link_mode.value if params.link_mode else None
    folder = _Folder(Path(facesets_dir), store)
    rounds = folder.state.rounds

    if undo:
        if not rounds:
            return JobOutcome({"undone": False, "reason": "nothing to undo"}, None)
        if dry_run:
            would_undo = [m.to_json() for m in rounds[-1].merges]
            return JobOutcome({"undone": False, "dry_run": True, "would_undo": would_undo}, None)
        reverted = folder.revert_top()
        undone = {
            "undone": True,
            "restored": [name for m in reverted.merges for name in m.sources],
            "rounds_left": len(folder.state.rounds),
        }
        log.info("consolidation undone", folder=str(folder.root), **undone)
        return JobOutcome(undone, folder.path if folder.state.rounds else None)

    if not dry_run and roll_back_consolidation(folder.root):
        folder = _Folder(Path(facesets_dir), store)
        rounds = folder.state.rounds

    current = folder.refine_bytes()
    top = rounds[-1] if rounds else None
    replaying = top is not None and top.refine_after_sha256 == _sha(current)
    base_text = top.refine_before if replaying and top else current.decode("utf-8")
    base = _parse_refine(base_text, folder.refine_path)
    check_made_from(base, store, folder.refine_path)

    table = store.face_table(with_embeddings=True)
    photos = Photos.scan(store, roots)
    mode = check_link_mode(link_mode or str(base.param("link_mode", "auto")))
    parameters: dict[str, ParamValue] = {
        "candidate_similarity": float(candidate_similarity),
        "confident_similarity": float(confident_similarity),
        "link_mode": mode,  # the mode used: the refine output's where none was given
    }
    plan = _plan(base, table, candidate_similarity, confident_similarity, marked_groups(store.path))
    merges = [m.planned() for m in plan.merges]
    before = len(base.entries())
    summary: dict[str, object] = {
        "facesets_before": before,
        "merges": merges,
        "candidates": [c.to_json() for c in plan.candidates],
        "dry_run": dry_run,
        "facesets_after": before - sum(len(m.sources) for m in plan.merges),
    }
    unchanged = (
        replaying
        and top is not None
        and top.parameters == parameters
        and [m.planned() for m in top.merges] == merges
        and top.candidates == plan.candidates
    )
    if dry_run or unchanged:
        summary["changed"] = False
        return JobOutcome(summary, folder.path if folder.path.exists() else None)
    if replaying:
        folder.revert_top()
    conflicts = folder.apply(plan, parameters, base_text, table, photos, mode, progress)
    summary.update(changed=True, foreign_conflicts=conflicts)
    log.info(
        "consolidated",
        folder=str(folder.root),
        merges=len(plan.merges),
        candidates=len(plan.candidates),
    )
    return JobOutcome(summary, folder.path)


Request = clustering_pb2.ConsolidateRequest


class Consolidate(ClusteringJob[Request, ConsolidateParams]):
    params = ConsolidateParams

    def writes(self, ctx: JobContext[Request], params: ConsolidateParams) -> Writes:
        return Writes([ctx.required(ctx.request.facesets_dir, "facesets_dir")])

    def run(self, ctx: JobContext[Request], params: ConsolidateParams) -> JobOutcome:
        folder = ctx.required(ctx.request.facesets_dir, "facesets_dir")
        return consolidate(folder, ctx.store, params, progress=ctx.progress, roots=ctx.roots)
