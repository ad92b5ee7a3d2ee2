"""What every clustering job declares and what it is given.

A job is a class (one per RPC, listed in jobs/registry.py): its request type, its parameters
class (from the contract), the folders it writes (held under the folder lock while it runs),
and `run(ctx, params)`. The servicer reads the parameters, opens the store and locks the
folders the same way for every job; the error policy (common/error_policy.py) answers any
failure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from facesets.clustering.jobs.job import JobOutcome
from facesets.clustering.store import FaceStore
from facesets.common.error_policy import MissingField
from facesets.common.progress import ProgressFn
from facesets.common.roots import Roots
from facesets.contract.fields import InvalidParameter, Params


class StoreRequest(Protocol):
    """Every clustering job's request names the store it works on."""

    @property
    def store(self) -> str: ...


R = TypeVar("R", bound=StoreRequest)
P = TypeVar("P", bound=Params)


@dataclass
class JobContext(Generic[R]):
    request: R
    roots: Roots  # what the job may read and write
    open_store: Callable[[str], FaceStore]
    progress: ProgressFn | None = None

    @cached_property
    def store(self) -> FaceStore:
        return self.open_store(self.request.store)

    def required(self, value: str, name: str) -> Path:
        """A path field the job cannot run without (empty would mean the service's own
        folder), inside the service's roots."""
        if not value.strip():
            raise MissingField(name)
        return self.roots.check(value, name)

    def optional(self, value: str, name: str) -> Path | None:
        return self.roots.check(value, name) if value else None

    @staticmethod
    def faceset(value: str) -> str:
        """A faceset of an export by name (faceset_NNN) or number; never a path."""
        name = value.strip()
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise InvalidParameter("faceset", value, "a faceset name or number, never a path")
        return name


@dataclass(frozen=True)
class Writes:
    """The output folders a job holds locked while it runs; `create`: it may make them."""

    folders: Sequence[Path] = field(default_factory=tuple)
    create: bool = False


class ClusteringJob(ABC, Generic[R, P]):
    params: type[P]

    def writes(self, ctx: JobContext[R], params: P) -> Writes:
        """The folders this run writes (none by default: it writes beside the store)."""
        return Writes()

    @abstractmethod
    def run(self, ctx: JobContext[R], params: P) -> JobOutcome: ...
