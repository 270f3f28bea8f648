"""Release versions (``MAJOR.MINOR.PATCH``, digits only) and hardware model names."""

from __future__ import annotations

import re
from typing import NewType

from trustfleet.errors import InvalidInput

__all__ = ["Version", "check_model", "format_version", "parse_version"]

Version = NewType("Version", tuple[int, int, int])
"""A parsed version; compare them as tuples."""

_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
_MODEL = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
"""A model name is a folder name on the server and in target paths: no '/', no leading '.'
(so never '.' or '..'), no NUL, no whitespace."""


def parse_version(text: str) -> Version:
    """Parse ``MAJOR.MINOR.PATCH`` (each 0-999999999, no leading zeros).

    Raises:
        InvalidInput: The text is not such a version (code ``ota.version.invalid``).
    """
    match = _VERSION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(
            f"'{str(text)[:40]}' is not a release version",
            hint="use MAJOR.MINOR.PATCH with digits only, e.g. 2.1.0",
            code="ota.version.invalid",
        )
    major, minor, patch = (int(part) for part in match.groups())
    return Version((major, minor, patch))


def format_version(version: Version) -> str:
    """The text form of a parsed version."""
    return ".".join(str(part) for part in version)


def check_model(model: str) -> str:
    """Return ``model`` if it is a valid hardware model name.

    Raises:
        InvalidInput: It is not 1-64 letters, digits, '.', '_' or '-', starting with no '.'
            (code ``ota.model.invalid``).
    """
    if not isinstance(model, str) or _MODEL.fullmatch(model) is None:
        raise InvalidInput(
            f"model '{str(model)[:70]}' is not valid",
            hint="use 1-64 letters, digits, '-', '_' or '.', not starting with '.'",
            code="ota.model.invalid",
        )
    return model
