"""The error the export job raises when it cannot run as asked."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The export cannot run as asked (bad parameters, an unreadable manifest in OUT)."""
