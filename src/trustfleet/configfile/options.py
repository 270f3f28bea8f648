"""Frozen option dataclasses filled from a configuration section.

Code that runs with bounds or options (the HTTPS front end's connection limits, the device's
update limits, the TUF client's bounds) keeps them in a frozen dataclass with safe defaults, so
that it can run, and be tested, without a configuration file. :func:`options_of` fills one from
the section that configures it, field by field by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["options_of"]

_O = TypeVar("_O")


def options_of(options_type: type[_O], section: BaseModel, **given: Any) -> _O:
    """Build ``options_type`` from the same-named fields of ``section``.

    Every field of the dataclass that the section's model also declares is read from the
    section; the values in ``given`` take the place of the section's (for a field the section
    names differently); the other fields keep their defaults.

    Args:
        options_type: A dataclass whose fields all have defaults.
        section: The configuration section (a pydantic model).
        **given: Field values that replace the section's own.

    Returns:
        The options.

    Raises:
        TypeError: ``given`` names a field that ``options_type`` does not have.
    """
    declared = type(section).model_fields
    values = {
        field.name: getattr(section, field.name)
        for field in dataclasses.fields(options_type)  # type: ignore[arg-type]
        if field.name in declared and field.name not in given
    }
    return options_type(**values, **given)
