"""The static HTML review report of an export, OUT/report/.

An overview (index.html) with one row per faceset of every partition, find and filter that
run in the browser without a server, one page per faceset with its contact sheet, dropped
faces and .fsz files, and small JPEG thumbnails cached beside the pages. Everything comes from
the export's manifests; inline CSS and JavaScript and relative links, so the folder opens
offline and can be copied as it is.
"""

from facesets.export.report.model import ReportError
from facesets.export.report.writer import ReportResult, build_report, write_report

__all__ = ["ReportError", "ReportResult", "build_report", "write_report"]
