"""The progress callback every job takes: a stage name, work done of total, an optional note."""

from __future__ import annotations

from typing import Protocol


class ProgressFn(Protocol):
    def __call__(self, stage: str, done: int, total: int, message: str = "") -> None: ...
