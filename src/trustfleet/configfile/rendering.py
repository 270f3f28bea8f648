"""Writing a configuration model as a self-documenting TOML file, and changing one.

The text is rendered from the pydantic model: every value is formatted by tomli-w (never by
hand), and comments come from the fields' ``description``: a comment above each section (the
description of the field that holds the section, else the section model's docstring; once for
a mapping of sections such as ``[ca.*]``) and a ``# description`` line before each key.
Reading the text back with :func:`~trustfleet.configfile.loading.load_toml_model` gives an
equal model.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import types
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict

from trustfleet.errors import Config

__all__ = ["ConfigModel", "merge_changes", "render_toml_model"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_WIDTH = 100


class ConfigModel(BaseModel):
    """Base of every section of a configuration file: unknown keys are refused, frozen.

    A field's docstring (the string right below it) is its ``description``, and so its comment
    in the written file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def render_toml_model(
    model: BaseModel, *, header: Sequence[str], exclude: Collection[str] = ()
) -> str:
    """The TOML text of ``model``, with comments from its fields' descriptions.

    Args:
        model: The model of the whole file; its fields that hold models (or mappings of
            names to models) become sections, the others top-level keys. ``None`` is omitted.
        header: Comment lines (without ``#``) at the top of the file.
        exclude: Fields that are not in the file (e.g. the directory it lives in).
    """
    data = model.model_dump(exclude=set(exclude))  # python values: inf stays inf (TOML has it)
    lines = [_comment(text) for text in header]
    tables: list[str] = []
    for name, info in type(model).model_fields.items():
        if name in exclude or data[name] is None:
            continue
        value, section = getattr(model, name), _section_model(info.annotation)
        if isinstance(value, BaseModel):
            note = info.description or _docstring(type(value))
            tables += ["", *_described(note), *_table((name,), value, data[name])]
        elif section is not None and isinstance(value, Mapping):
            tables += ["", *_described(info.description or _docstring(section))]
            for index, (key, item) in enumerate(value.items()):
                tables += [""] * bool(index) + _table((name, key), item, data[name][key])
        else:
            lines += [*_described(info.description), *_key_value(name, data[name])]
    return "\n".join([*lines, *tables]) + "\n"


def merge_changes(
    model: type[BaseModel],
    current: Mapping[str, Any],
    changes: Mapping[str, Mapping[str, Any]],
    *,
    path: Path,
) -> dict[str, Any]:
    """``current`` (a dump of ``model``) with ``{"section": {"key": value}}`` applied.

    A section that holds a mapping of names to models (e.g. ``ca``) takes ``{"name": {...}}``
    and merges each entry. The result still needs validating as ``model``; ``path`` is the
    file, for the messages.

    Raises:
        Config: An unknown section, or an unknown key in a section.
    """
    merged = dict(current)
    fields = model.model_fields
    for section, values in changes.items():
        info = fields.get(section)
        inner = _section_model(info.annotation) if info is not None else None
        if info is None or inner is None:
            names = ", ".join(n for n, f in fields.items() if _section_model(f.annotation))
            raise Config(f"{path}: unknown section [{section}]", hint=f"the sections are: {names}")
        old = merged.get(section) or {}
        if _is_mapping(info.annotation):
            merged[section] = {**old, **{k: _entry(old.get(k), v) for k, v in values.items()}}
            continue
        unknown = [key for key in values if key not in inner.model_fields]
        if unknown:
            raise Config(
                f"{path}: unknown setting '{section}.{unknown[0]}'",
                hint=f"the keys of [{section}] are: {', '.join(inner.model_fields)}",
            )
        merged[section] = {**old, **values}
    return merged


def _entry(old: Mapping[str, Any] | None, new: Any) -> Any:
    """One entry of a mapping section: a table merges into the old one; anything else fails."""
    return {**(old or {}), **new} if isinstance(new, Mapping) else new


def _table(path: tuple[str, ...], model: BaseModel, data: Mapping[str, Any]) -> list[str]:
    """A section; its lists of tables follow its keys as ``[[section.name]]`` (an array of
    tables written among the keys would take the keys after it)."""
    dotted = ".".join(_key(part) for part in path)
    lines, arrays = [f"[{dotted}]"], []
    for name, info in type(model).model_fields.items():
        value = data[name]
        if value and isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            arrays += ["", *_described(info.description)]
            for item in value:
                arrays += [f"[[{dotted}.{_key(name)}]]"]
                arrays += [line for k, v in item.items() if v is not None
                           for line in _key_value(k, v)]  # fmt: skip
        elif value is not None:
            lines += [*_described(info.description), *_key_value(name, value)]
    return lines + arrays


def _key_value(name: str, value: Any) -> list[str]:
    if isinstance(value, Mapping):
        raise TypeError(f"{name}: a nested table inside a section is not supported")
    return tomli_w.dumps({name: value}).rstrip("\n").split("\n")


def _key(name: str) -> str:
    """A TOML key: bare when it can be, else quoted by tomli-w."""
    if _BARE_KEY.fullmatch(name):
        return name
    return tomli_w.dumps({name: 0}).rstrip("\n").removesuffix(" = 0")


def _described(text: str | None) -> list[str]:
    return [_comment(line) for line in _wrap(text)] if text else []


def _wrap(text: str) -> Iterator[str]:
    """Each paragraph refilled to the width; a blank comment line between paragraphs."""
    for index, paragraph in enumerate(inspect.cleandoc(text).split("\n\n")):
        plain = " ".join(paragraph.split()).replace("``", "'").replace("*", "")
        yield from [""] * bool(index) + textwrap.wrap(plain, _WIDTH - 2)


def _comment(line: str) -> str:
    return f"# {line}".rstrip()


def _docstring(cls: type[BaseModel]) -> str | None:
    return cls.__doc__  # not inherited: a section without one has no comment


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (``M``, ``M | None`` or ``dict[str, M]``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (dict, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _section_model(arg)
            if found is not None:
                return found
    return None


def _is_mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict
