"""The error every clustering job raises for input it cannot work on."""

from __future__ import annotations


class JobError(ValueError):
    """A job cannot run on what it was given; the message says why and what to do."""
