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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
