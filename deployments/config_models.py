"""Request models generated from the library's config dataclasses, so that the OpenAPI
schema documents every config field (type, default, the dataclass's attribute docstring)
and never drifts from what the jobs accept. The library still validates the values."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model


def attribute_docstrings(cls: type) -> dict[str, str]:
    """The string literal under each annotated attribute of ``cls``'s body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for statement, following in zip(body, body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


# "- ``name``: text" (or "- ``a`` x ``b``: text") bullets in a class docstring.
_BULLET = re.compile(r"^- ((?:``\w+``(?: x )?)+): (.+?)(?=^\s*- ``|^\s*$|\Z)", re.M | re.S)


def docstring_bullets(cls: type) -> dict[str, str]:
    """Field descriptions written as bullets in the class docstring."""
    docs = {}
    for names, text in _BULLET.findall(inspect.cleandoc(cls.__doc__ or "")):
        for name in re.findall(r"``(\w+)``", names):
            docs[name] = " ".join(text.split())
    return docs


def request_model(
    dataclass: type,
    name: str,
    doc: str,
    *,
    types: dict[str, Any] | None = None,
    descriptions: dict[str, str] | None = None,
    exclude: tuple[str, ...] = (),
) -> type[BaseModel]:
    """A pydantic model with ``dataclass``'s fields. ``types`` replaces the JSON form of
    fields (e.g. specs written as strings), ``descriptions`` adds to the docstrings."""
    hints = typing.get_type_hints(dataclass)
    docs = {
        **docstring_bullets(dataclass),
        **attribute_docstrings(dataclass),
        **(descriptions or {}),
    }
    definitions: dict[str, Any] = {}
    for field in dataclasses.fields(dataclass):
        if field.name in exclude or not field.init:
            continue
        annotation = (types or {}).get(field.name, hints[field.name])
        if field.default is not dataclasses.MISSING:
            default: Any = field.default
            if isinstance(default, tuple):
                default = list(default)
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = ...
        definitions[field.name] = (
            annotation,
            Field(default=default, description=docs.get(field.name)),
        )
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid"),
        __doc__=doc,
        **definitions,
    )
