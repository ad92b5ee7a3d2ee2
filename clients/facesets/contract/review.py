"""The review decisions of `facesets review` as export-service jobs: reject crops, split a
faceset, name one, mark two as different people. Each is a maintenance run of the export
(recorded in its manifest.json, put back by RestoreRequest).

Facesets are named, crops are file names as a faceset's manifest lists them: a request never
carries a path inside the export, only the export folder itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facesets.contract.requests import JobRequest
from facesets.v1 import common_pb2, export_pb2, export_pb2_grpc

JobEvents = Iterator[common_pb2.JobEvent]
Stub = export_pb2_grpc.ExportStub
FACESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
CROP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._ -]{0,250}\.png")
# A person's name: letters (any script), digits, spaces, dots, dashes and apostrophes.
PERSON_NAME = re.compile(r"[^\W_][\w .'-]{0,79}")
MAX_CROPS = 100_000


def check_faceset(value: str, what: str = "faceset") -> str:
    if not FACESET_NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a faceset name (faceset_NNN), never a path")
    return value


def check_crops(crops: tuple[str, ...]) -> tuple[str, ...]:
    if not crops:
        raise ValueError("no crop chosen")
    if len(crops) > MAX_CROPS:
        raise ValueError(f"{len(crops)} crops in one request (at most {MAX_CROPS})")
    for crop in crops:
        if not CROP_NAME.fullmatch(crop) or crop.startswith(".."):
            raise ValueError(f"{crop!r} is not a crop's file name (a PNG name, never a path)")
    return crops


def check_person_name(value: str) -> str:
    name = " ".join(value.split())
    if not PERSON_NAME.fullmatch(name):
        raise ValueError(
            f"{value!r} is not a usable name (1-80 letters, digits, spaces, . ' -, starting "
            "with a letter or digit)"
        )
    return name


def bundle_name(name: str) -> str:
    """The stem a named faceset's .fsz files take: the name, spaces as underscores."""
    return re.sub(r"[ ']+", "_", name).strip("_.") or "faceset"


@dataclass(frozen=True)
class RejectCropsRequest(JobRequest):
    out: Path
    faceset: str
    crops: tuple[str, ...]
    proto = export_pb2.RejectCropsRequest
    stage = "reject"

    def __post_init__(self) -> None:
        check_faceset(self.faceset)
        check_crops(self.crops)

    def call(self, stub: Stub) -> JobEvents:
        return stub.RejectCrops(self.to_proto())


@dataclass(frozen=True)
class SplitRequest(JobRequest):
    out: Path
    faceset: str
    crops: tuple[str, ...]
    into: str = ""  # empty: the crops become a new faceset
    proto = export_pb2.SplitRequest
    stage = "split"

    def __post_init__(self) -> None:
        check_faceset(self.faceset)
        check_crops(self.crops)
        if self.into:
            check_faceset(self.into, "into")
            if self.into == self.faceset:
                raise ValueError(f"split {self.faceset} into a faceset other than itself")

    def call(self, stub: Stub) -> JobEvents:
        return stub.Split(self.to_proto())


@dataclass(frozen=True)
class NameRequest(JobRequest):
    out: Path
    faceset: str
    name: str
    proto = export_pb2.NameRequest
    stage = "name"

    def __post_init__(self) -> None:
        check_faceset(self.faceset)
        object.__setattr__(self, "name", check_person_name(self.name))

    def call(self, stub: Stub) -> JobEvents:
        return stub.Name(self.to_proto())


@dataclass(frozen=True)
class MarkDifferentRequest(JobRequest):
    out: Path
    faceset: str
    other: str
    store: Path | None = None  # the store the faces came from: later refines keep them apart
    proto = export_pb2.MarkDifferentRequest
    stage = "mark-different"

    def __post_init__(self) -> None:
        check_faceset(self.faceset)
        check_faceset(self.other, "other")
        if self.faceset == self.other:
            raise ValueError(f"{self.faceset} cannot be a different person from itself")

    def call(self, stub: Stub) -> JobEvents:
        return stub.MarkDifferent(self.to_proto())
