"""Whether a process still runs: for a service watching the command that started it, and for
a command telling the leftovers of commands that are gone."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has)."""
    if sys.platform.startswith("linux"):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    if os.name == "nt":
        return True  # os.kill would terminate it: callers rely on their other checks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
