"""What every job's parameters object shares: declared ranges, their check, link modes.

Each service has a small params module of frozen dataclasses, one per job, whose defaults come
from settings and whose fields declare the range the job accepts (`bounded`). `check_ranges`
runs in each dataclass's `__post_init__`, so no parameters object exists outside its ranges,
and the servicer turns an `InvalidParameter` into INVALID_ARGUMENT with its message.
A params field and its request field share a name: `given_fields` reads a request into a params
object's arguments, `request_fields` writes one back (the orchestrator's stage requests).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self, TypeVar

from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from facesets.contract.manifests import ParamValue
from facesets.v1 import clustering_pb2

T = TypeVar("T")


class InvalidParameter(ValueError):
    """A parameter outside the range its job accepts; the message names both."""

    def __init__(self, name: str, value: object, allowed: str) -> None:
        self.field = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{name} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class Range:
    """The values a numeric parameter may take; None leaves that side open-ended."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low end itself is excluded
    high_open: bool = False
    integer: bool = False
    what: str = ""  # what the number is, for the message ("a cosine distance")

    def describe(self) -> str:
        kind = self.what or ("an integer" if self.integer else "a number")
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        return f"a finite {kind.removeprefix('a ').removeprefix('an ')}"

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


COSINE_DISTANCE = Range(0.0, 2.0, low_open=True, what="a cosine distance")
COSINE_SIMILARITY = Range(-1.0, 1.0, what="a cosine similarity")
SCORE = Range(0.0, 1.0, what="a score")
FRACTION = Range(0.0, 1.0, what="a fraction")
NON_NEGATIVE = Range(0.0)
COUNT = Range(0, integer=True)
POSITIVE_COUNT = Range(1, integer=True)


def bounded(default: T, allowed: Range, help: str = "") -> T:
    """A dataclass field with a default, the range `check_ranges` holds it to, and the help
    text of its command-line flag."""
    return dataclasses.field(default=default, metadata={"range": allowed, "help": help})


def described(default: T, help: str) -> T:
    """A dataclass field without a range (a switch, a text): its default and its help text."""
    return dataclasses.field(default=default, metadata={"help": help})


def help_of(field: dataclasses.Field[Any]) -> str:
    """A parameter's help text with its range, as a command-line flag shows it."""
    text = str(field.metadata.get("help", ""))
    allowed = field.metadata.get("range")
    if allowed is not None:
        text = f"{text} ({allowed.describe()})" if text else allowed.describe()
    return text


def check_ranges(params: Any, error: type[InvalidParameter] = InvalidParameter) -> None:
    """Raise `error` for the first field of a params dataclass outside its declared range."""
    for field in dataclasses.fields(params):
        allowed = field.metadata.get("range")
        value = getattr(params, field.name)
        if allowed is not None and value is not None and not allowed.accepts(value):
            raise error(field.name, value, allowed.describe())


class LinkMode(StrEnum):
    """How a job places photos into its output folders."""

    AUTO = "auto"  # hardlink where the filesystem allows, copy otherwise
    HARDLINK = "hardlink"
    SYMLINK = "symlink"
    COPY = "copy"

    @classmethod
    def parse(
        cls, value: LinkMode | str, error: type[InvalidParameter] = InvalidParameter
    ) -> LinkMode:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(mode.value for mode in cls)
            raise error("link_mode", value, f"a link mode: one of {choices}") from None

    @classmethod
    def from_proto(cls, value: int) -> LinkMode:
        try:
            return cls[clustering_pb2.LinkMode.Name(value).removeprefix("LINK_MODE_")]
        except (ValueError, KeyError):  # a number no LinkMode has (proto3 enums are open)
            names = ", ".join(clustering_pb2.LinkMode.keys())
            raise InvalidParameter("link_mode", value, f"one of {names}") from None

    def to_proto(self) -> clustering_pb2.LinkMode:
        return clustering_pb2.LinkMode.Value(f"LINK_MODE_{self.name}")  # type: ignore[return-value]  # the stubs type Value() as int


LINK_MODE_HELP = (
    "how photos appear in output folders (auto: hardlink where the filesystem allows, copy "
    "otherwise)"
)


class Params:
    """What every job's parameters object shares (each is a frozen dataclass deriving from it):
    link modes given as text become LinkMode, every declared range is checked at construction,
    a request is read by field name (`given_fields`), and the manifest records the object
    itself (`recorded`)."""

    def __post_init__(self) -> None:
        mode = getattr(self, "link_mode", None)
        if mode is not None:
            object.__setattr__(self, "link_mode", LinkMode.parse(mode))
        check_ranges(self)

    @classmethod
    def from_request(cls, request: Message) -> Self:
        return cls(**given_fields(cls, request))

    def recorded(self) -> dict[str, ParamValue]:
        """The parameters as a manifest records them: JSON values, link modes by name."""
        out: dict[str, ParamValue] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]  # a dataclass subclass
            value = getattr(self, field.name)
            if isinstance(value, Params):  # a parameter group: its fields, flat
                out.update(value.recorded())
                continue
            if isinstance(value, LinkMode):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out


# --- requests <-> params objects ------------------------------------------------------------
def given_fields(params_type: type, request: Message) -> dict[str, object]:
    """The keyword arguments a params dataclass takes from a request: each of its fields that
    the request declares and the sender gave. An `optional` field is given when set. A field
    without presence (a plain bool, an enum, a repeated field) is given when not zero or empty,
    since proto3 cannot tell those from unset: there the dataclass default stays. Repeated
    fields become tuples, link modes `LinkMode`."""
    declared = request.DESCRIPTOR.fields_by_name
    given: dict[str, object] = {}
    for field in dataclasses.fields(params_type):
        proto = declared.get(field.name)
        if proto is None or (proto.has_presence and not request.HasField(field.name)):
            continue
        value = getattr(request, field.name)
        group = _group_type(field)
        if group is not None:  # a parameter group, sent as a message of its own
            given[field.name] = group(**given_fields(group, value))
            continue
        if not proto.has_presence and not value:
            continue
        if proto.is_repeated:
            value = tuple(value)
        elif proto.enum_type is not None:
            value = _link_mode(proto.enum_type.full_name, value)
        given[field.name] = value
    return given


def request_fields(params: Params, request_type: type[Message]) -> dict[str, object]:
    """The fields of a params dataclass that a request message declares, as keyword arguments
    of that message (the inverse of `given_fields`): None stays unset, so the service takes
    its default, and link modes become the proto enum."""
    declared = request_type.DESCRIPTOR.fields_by_name
    fields: dict[str, object] = {}
    for field in dataclasses.fields(params):  # type: ignore[arg-type]  # a dataclass subclass
        value = getattr(params, field.name)
        if field.name not in declared or value is None:
            continue
        if isinstance(value, Params):
            message_type = declared[field.name].message_type
            assert message_type is not None, f"{field.name} is a parameter group, not a message"
            group = GetMessageClass(message_type)  # type: ignore[arg-type]  # upb and Python descriptors are one type at run time
            fields[field.name] = group(**request_fields(value, group))
        else:
            fields[field.name] = value.to_proto() if isinstance(value, LinkMode) else value
    return fields


def _group_type(field: dataclasses.Field[Any]) -> type[Params] | None:
    """The Params class of a parameter-group field (one with a default factory), else None."""
    if field.default_factory is dataclasses.MISSING:
        return None
    made = field.default_factory()
    return type(made) if isinstance(made, Params) else None


def _link_mode(enum: str, value: int) -> LinkMode:
    """A request's enum value as a params object holds it: LinkMode is the only such enum."""
    if enum != clustering_pb2.LinkMode.DESCRIPTOR.full_name:
        raise TypeError(f"no params type for the enum {enum}")
    return LinkMode.from_proto(value)
