"""Why faces did not reach a faceset, gate by gate: the counts jobs record and how they read.

Refine and route count, among the faces they considered, how many each gate removed: the
quality gate's size, sharpness and detector-score tests (a face is counted at the first it
fails, in that order), then outlier rejection and the cluster-size filter. The counts go into
the job's summary and manifest under "gates"; export copies them into its manifest, so the
CLI and the report can say why a run produced no faceset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

# (key, label, what removes a face given its threshold), in the order the gates apply.
GATES: tuple[tuple[str, str, str], ...] = (
    ("size", "size", "face short edge below {} px"),
    ("blur", "sharpness", "sharpness below {}"),
    ("det_score", "detector score", "detector score below {}"),
    ("outliers", "outliers", "farther than {} (cosine) from their cluster's centre"),
    ("cluster_size", "cluster size", "in clusters of fewer than {} photos"),
)


class GateSummary(TypedDict):
    """The "gates" entry a job writes (gate_summary)."""

    stage: str
    faces: int
    removed: dict[str, int]  # faces each gate removed, by key of GATES
    kept: int
    thresholds: dict[str, float]
    earlier_sharpness: int


def gate_summary(
    stage: str,
    faces: int,
    removed: Mapping[str, int],
    kept: int,
    thresholds: Mapping[str, float],
    earlier_sharpness: int = 0,
) -> GateSummary:
    """The "gates" entry of a job's summary and manifest."""
    return {
        "stage": stage,
        "faces": int(faces),
        "removed": {key: int(removed.get(key, 0)) for key, _, _ in GATES},
        "kept": int(kept),
        "thresholds": {key: float(value) for key, value in thresholds.items()},
        # Faces whose sharpness is of the earlier, size-dependent measure (`facesets enrich`
        # measures them again).
        "earlier_sharpness": int(earlier_sharpness),
    }


def rows(gates: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(label, faces removed, why) per gate, in the order the gates apply."""
    removed: Mapping[str, Any] = gates.get("removed") or {}
    thresholds: Mapping[str, Any] = gates.get("thresholds") or {}
    return [
        (
            label,
            int(removed.get(key, 0)),
            reason.format(f"{float(thresholds[key]):g}") if key in thresholds else "",
        )
        for key, label, reason in GATES
    ]


def notes(gates: Mapping[str, Any]) -> list[str]:
    """What the counts say: the gate that removed most, faces still on the earlier measure."""
    found: list[str] = []
    counted = rows(gates)
    if int(gates.get("faces", 0)) == 0:
        found.append("no faces to consider: the detector found no face in these photos")
    else:
        label, count, _ = max(counted, key=lambda row: row[1])
        if count > 0:
            found.append(f"most faces were removed by {label}")
    earlier = int(gates.get("earlier_sharpness", 0))
    if earlier:
        found.append(
            f"{earlier} faces hold the earlier sharpness measure: "
            "`facesets enrich STORE` measures them again"
        )
    return found


def headline(gates: Mapping[str, Any]) -> str:
    return f"{int(gates.get('faces', 0))} faces considered by {gates.get('stage', 'refine')}"


def explain(gates: Mapping[str, Any]) -> list[str]:
    """One line per gate (faces removed and why), what it leaves and notes, as plain text."""
    lines = [headline(gates)]
    for label, count, why in rows(gates):
        lines.append(f"  {label:<15} {count:>6} removed" + (f"  ({why})" if why else ""))
    lines.append(f"  {'kept':<15} {int(gates.get('kept', 0)):>6} in facesets")
    return lines + notes(gates)


def is_empty(summary: Mapping[str, Any]) -> bool:
    """Whether a refine, route or export summary (or an import's) ended with no faceset."""
    if "facesets" in summary and not int(summary.get("facesets") or 0):
        return True
    return "kept" in summary and not int(summary.get("kept") or 0)


def explain_empty(summary: Mapping[str, Any]) -> str:
    """Why a run produced no faceset, gate by gate; "" when it produced some."""
    if not is_empty(summary):
        return ""
    lines = ["no faceset was produced:"]
    gates = summary.get("gates")
    if isinstance(gates, Mapping) and gates:
        lines += explain(gates)
    else:
        lines.append("  (no per-gate counts were recorded)")
    dropped = summary.get("dropped")
    if isinstance(dropped, Mapping) and dropped:
        lines.append("export dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    return "\n".join(lines)
