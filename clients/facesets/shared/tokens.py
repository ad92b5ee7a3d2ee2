"""Bearer token files: what a service and its callers share to authenticate."""

from __future__ import annotations

from pathlib import Path

from facesets.shared.logs import register_secret


def read_token(path: Path | None) -> str | None:
    """The token in a file (surrounding whitespace stripped), registered so that no log line
    prints it; None when no file is given."""
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) else "not text"
        raise ValueError(f"cannot read the token file {path}: {why}") from error
    if not token:
        raise ValueError(f"token file {path} is empty")
    register_secret(token)
    return token
