"""Command-line flags built from the contract's parameters classes, so a parameter is declared
once: its name, type, default, range and help text come from its field (contract/fields.py).

A field `min_faces` becomes `--min-faces`; a parameter group (the quality gate) gives the
flags of its own fields; a switch that is off by default (`dry_run`) becomes
`--dry-run`; `cannot_link` (on by default) becomes `--allow-same-photo`, its inverse; a link
mode offers its choices; a tuple of texts takes one or more values.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection
from typing import Any, TypeVar

from facesets.contract.fields import LINK_MODE_HELP, LinkMode, Params, help_of

P = TypeVar("P")

# A field whose flag is not its own name: cannot_link is offered as its inverse.
ALLOW_SAME_PHOTO = "allow_same_photo"
ALLOW_SAME_PHOTO_HELP = (
    "let two faces of one photo join one identity (by default they never do: two faces in one "
    "photo are two people; the manifest counts the merges this prevented)"
)


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def add_params_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    params_type: type,
    skip: Collection[str] = (),
    keep_link_mode: bool = False,
) -> None:
    """One flag per field of `params_type` (except those in `skip`), each defaulting to the
    field's default. `keep_link_mode`: a link mode of None means "the mode each output was
    made with", which `auto` asks for."""
    for field in dataclasses.fields(params_type):
        if field.name in skip:
            continue
        default = _default(field)
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(default, Params):
            add_params_flags(parser, type(default), skip, keep_link_mode)
        elif field.name == "link_mode":
            parser.add_argument(
                flag,
                choices=[mode.value for mode in LinkMode],
                default=LinkMode.AUTO.value,
                help=LINK_MODE_HELP
                + ("; auto keeps the mode each output was made with" if keep_link_mode else ""),
            )
        elif field.name == "cannot_link":
            parser.add_argument(
                "--allow-same-photo",
                dest=ALLOW_SAME_PHOTO,
                action="store_true",
                default=not default,
                help=ALLOW_SAME_PHOTO_HELP,
            )
        elif isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=default, help=help_of(field))
        elif isinstance(default, tuple):
            parser.add_argument(
                flag,
                nargs="+",
                default=default,
                metavar="TEXT",
                help=f"{help_of(field)} (default: %(default)s)",
            )
        else:
            kind: type = type(default) if default is not None else str
            parser.add_argument(
                flag,
                type=kind,
                default=default,
                metavar="N" if kind in (int, float) else "TEXT",
                help=f"{help_of(field)} (default %(default)s)",
            )


def params_from_args(
    params_type: type[P], args: argparse.Namespace, skip: Collection[str] = (), **given: Any
) -> P:
    """The parameters object the flags of `add_params_flags` describe (values in `given` win);
    a value outside its range raises InvalidParameter, naming the flag's field."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(params_type):  # type: ignore[arg-type]  # a dataclass type
        if field.name in skip or field.name in given:
            continue
        default = _default(field)
        if isinstance(default, Params):
            values[field.name] = params_from_args(type(default), args, skip)
        elif field.name == "cannot_link":
            values["cannot_link"] = not getattr(args, ALLOW_SAME_PHOTO)
        elif field.name == "link_mode":
            mode = LinkMode(args.link_mode)
            keeps = _default(field) is None  # None: the mode each output was made with
            values["link_mode"] = None if keeps and mode is LinkMode.AUTO else mode
        elif hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return params_type(**values, **given)
