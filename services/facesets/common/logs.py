"""structlog set-up shared by every service and the CLI; secrets are redacted on the way out."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|api[_-]?key|secret|password|authorization)", re.I)
_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Never print this value, whichever field or message it turns up in."""
    if value:
        _known_secrets.add(value)


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and value:
            event[key] = "***"
        elif isinstance(value, str):
            for secret in _known_secrets:
                if secret in value:
                    value = value.replace(secret, "***")
            event[key] = value
    return event


class _AroundProgressBars:
    """stderr for log lines: while a progress bar is drawn there, a line goes out through
    tqdm.write, which lifts the bar, prints the line and draws the bar again below it."""

    def write(self, text: str) -> int:
        from tqdm import tqdm

        if getattr(tqdm, "_instances", None):
            tqdm.write(text.rstrip("\n"), file=sys.stderr)
        else:
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", json: bool = False) -> None:
    """Log to stderr: key=value lines for people, JSON lines for machines."""
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_AroundProgressBars()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
