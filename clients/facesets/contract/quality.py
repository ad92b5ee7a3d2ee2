"""The quality gate: one parameter group shared by refine, route, discover and age split (and
one proto message, facesets.v1.QualityGate). A face passes when it is large, sharp and
confidently detected enough."""

from __future__ import annotations

from dataclasses import dataclass

from facesets.contract import defaults
from facesets.contract.fields import NON_NEGATIVE, SCORE, Params, bounded


@dataclass(frozen=True)
class QualityGate(Params):
    min_short: float = bounded(
        float(defaults.QUALITY_MIN_SHORT),
        NON_NEGATIVE,
        "quality gate: smallest face short edge, pixels",
    )
    min_blur: float = bounded(
        defaults.QUALITY_MIN_BLUR, NON_NEGATIVE, "quality gate: smallest sharpness of the face"
    )
    min_det_score: float = bounded(
        defaults.QUALITY_MIN_DET_SCORE, SCORE, "quality gate: smallest detector score"
    )
