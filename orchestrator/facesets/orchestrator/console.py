"""Terminal output of the command line: log lines that leave progress bars intact."""

from __future__ import annotations

import sys

from tqdm import tqdm


class AroundProgressBars:
    """stderr for log lines: while a progress bar is drawn there, a line goes out through
    tqdm.write, which lifts the bar, prints the line and draws the bar again below it."""

    def write(self, text: str) -> int:
        if getattr(tqdm, "_instances", None):
            tqdm.write(text.rstrip("\n"), file=sys.stderr)
        else:
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()
