"""Every export job, one instance per RPC: the static registry the servicer installs.

Jobs are peers: each module holds one job over the shared modules (context.py, restoring.py
and the export's maintenance/, report/ and video/ packages); none imports another.
"""

from __future__ import annotations

from typing import Any

from facesets.export.jobs.context import ExportJob, ExportQuery
from facesets.export.jobs.cut_segments import CutSegments
from facesets.export.jobs.dedup_optimize import DedupOptimize
from facesets.export.jobs.export_swap import ExportSwap
from facesets.export.jobs.mark_different import MarkDifferent
from facesets.export.jobs.media_info import MediaInfo
from facesets.export.jobs.merge import Merge
from facesets.export.jobs.name import Name
from facesets.export.jobs.occlusion import Occlusion
from facesets.export.jobs.plan_videos import PlanVideos
from facesets.export.jobs.reject_crops import RejectCrops
from facesets.export.jobs.report import Report
from facesets.export.jobs.restore import Restore
from facesets.export.jobs.split import Split

EXPORT_SWAP = ExportSwap()
REPORT = Report()
OCCLUSION = Occlusion()
DEDUP_OPTIMIZE = DedupOptimize()
MERGE = Merge()
RESTORE = Restore()
PLAN_VIDEOS = PlanVideos()
CUT_SEGMENTS = CutSegments()
MEDIA_INFO = MediaInfo()
# Review decisions (`facesets review`): each a maintenance run.
REJECT_CROPS = RejectCrops()
SPLIT = Split()
NAME = Name()
MARK_DIFFERENT = MarkDifferent()

# Streaming RPCs: progress events, then the job's summary.
JOBS: tuple[ExportJob[Any, Any], ...] = (
    EXPORT_SWAP,
    REPORT,
    OCCLUSION,
    DEDUP_OPTIMIZE,
    MERGE,
    RESTORE,
    PLAN_VIDEOS,
    CUT_SEGMENTS,
    REJECT_CROPS,
    SPLIT,
    NAME,
    MARK_DIFFERENT,
)
# Unary RPCs answered at once.
QUERIES: tuple[ExportQuery[Any, Any], ...] = (MEDIA_INFO,)
