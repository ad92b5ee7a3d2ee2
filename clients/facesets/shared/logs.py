"""structlog set-up shared by every service and the CLI; secrets are redacted on the way out.

The client library only registers secrets here (token files); structlog itself comes with the
CLI and the services, which call `configure`.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Protocol

_SECRET_KEYS = re.compile(r"(token|api[_-]?key|secret|password|authorization)", re.I)
_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Never print this value, whichever field or message it turns up in."""
    if value:
        _known_secrets.add(value)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and value:
            event[key] = "***"
        elif isinstance(value, str):
            for secret in _known_secrets:
                if secret in value:
                    value = value.replace(secret, "***")
            event[key] = value
    return event


class LogStream(Protocol):
    def write(self, text: str) -> int: ...
    def flush(self) -> None: ...


class _Stderr:
    """Whatever sys.stderr is at the time of writing (tests and the CLI may replace it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", json: bool = False, stream: LogStream | None = None) -> None:
    """Log to `stream` (stderr by default): key=value lines for people, JSON lines for machines.
    The command line passes a stream that keeps log lines clear of its progress bars."""
    import structlog

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
        logger_factory=structlog.PrintLoggerFactory(file=stream or _Stderr()),  # type: ignore[arg-type]  # typed TextIO; only write() and flush() are used
        cache_logger_on_first_use=False,
    )
