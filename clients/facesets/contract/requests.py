"""What every job request of the contract shares: its paths, its proto, its stage name.

A request is a frozen dataclass of the paths a job works on, its parameters object (`params`)
and any other fields its proto declares under the same names. `to_proto` writes the paths
absolute (a service resolves nothing against its own working folder), the parameters by field
name (`request_fields`) and the rest as they are; `roots` lists every path, which is what a
local service started for the request may use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from google.protobuf.message import Message

from facesets.contract.fields import Params, request_fields


def absolute(path: Path | None) -> str:
    """A path as a request carries it: absolute, "" for none."""
    return str(Path(path).resolve()) if path else ""


def _paths(value: Any) -> Iterable[Path]:
    if isinstance(value, Path):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _paths(item)


class JobRequest:
    proto: ClassVar[type[Message]]  # the job's request message
    stage: ClassVar[str] = ""  # how summaries and progress name the job

    def roots(self) -> list[Path]:
        return [
            path
            for field in dataclasses.fields(self)  # type: ignore[arg-type]  # dataclass subclasses
            for path in _paths(getattr(self, field.name))
        ]

    def proto_fields(self) -> dict[str, Any]:
        """The request message's fields: paths absolute, parameters by name, the rest as is."""
        declared = self.proto.DESCRIPTOR.fields_by_name
        values: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]  # dataclass subclasses
            value = getattr(self, field.name)
            if isinstance(value, Params):
                values.update(request_fields(value, self.proto))
            elif field.name not in declared:
                continue
            elif isinstance(value, Path) or (value is None and "Path" in str(field.type)):
                values[field.name] = absolute(value)
            elif isinstance(value, list | tuple) and all(isinstance(v, Path) for v in value):
                values[field.name] = [absolute(v) for v in value]
            else:
                values[field.name] = value
        return values

    def to_proto(self) -> Any:
        return self.proto(**self.proto_fields())
